"""docs/benchmarks.md holds one section per benchmark, each between its own markers."""

import argparse
from pathlib import Path


def cpu() -> str:
    """'AMD EPYC (lscpu's family 25, model 17)': the model tells apart hosts of one name, whose
    speeds differ by a quarter and more."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    field = lambda name: next(  # noqa: E731
        (ln.split(":", 1)[1].strip() for ln in lines if ln.split(":")[0].strip() == name), "?"
    )
    return f"{field('model name')} (lscpu's family {field('cpu family')}, model {field('model')})"


def write_section(path: Path, name: str, section: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``,
    or append it (creating the file); the other sections stay as they are."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def publish(section: str, path: Path | None, name: str) -> None:
    """Print the section, and put it in ``path`` (docs/benchmarks.md) when one is given."""
    print(section)
    if path is not None:
        write_section(path, name, section)


def targets_table(
    targets: list[str], title: str = "Targets", seconds: float | None = None
) -> list[str]:
    """A section's closing table: one row a target, as `| target | measured | required |
    result |`; then, given the ``seconds`` the benchmark took, a line saying so."""
    took = [f"Benchmark time: {seconds:.0f} s."] if seconds is not None else []
    return [f"### {title}", "", "| target | measured | required | result |",
            "|---|---:|---|---|", *targets, "", *took]  # fmt: skip


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line: described by its docstring's first line, with ``--write``
    (docs/benchmarks.md, where its section goes)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--write", type=Path, help="markdown file to put the section in")
    return parser


def verdicts(targets: list[tuple[str, str, str, bool]]) -> tuple[list[str], bool]:
    """(target, measured, required, met) as the targets table's rows; and whether all are met."""
    rows = [f"| {n} | {m} | {r} | {'PASS' if ok else '**FAIL**'} |" for n, m, r, ok in targets]
    return rows, all(ok for *_, ok in targets)
