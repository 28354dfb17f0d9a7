"""The README's example runs as written and prints what it claims."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_readme_example_runs_and_reaches_the_accuracies_it_quotes():
    text = README.read_text()
    block = re.search(
        r"<!-- readme-example:start -->\n```python\n(.*?)```\n<!-- readme-example:end -->",
        text,
        re.S,
    )
    assert block, "README lost its marked example"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block.group(1), str(README), "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0] == "(625, 150) (1, 150)"
    cost0, ln2 = map(float, lines[1].split())
    assert abs(cost0 - ln2) < 1e-6
    assert float(lines[2]) >= 0.90  # README: ~0.94
    assert float(lines[3]) < 1e-7  # README: ~1e-9
    assert float(lines[4]) >= 0.95  # README: ~0.97


def test_each_line_the_plain_tour_links_to_is_the_code_it_shows():
    text = README.read_text()
    table = text.split("<!-- plain-tour:start -->")[1].split("<!-- plain-tour:end -->")[0]
    links = re.findall(r"\[`(.+?)`\]\((models/plain\.py)#L(\d+)\)", table)
    assert len(links) == 9, "the tour lost a row"
    for code, path, line in links:
        lines = (README.parent / path).read_text().splitlines()
        assert code in lines[int(line) - 1], f"{path}#L{line} is not `{code}`"
