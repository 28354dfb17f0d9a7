"""`gradq predict JOB IMAGE...`: classify images with a succeeded job's trained weights."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from service.cli import ApiOption, answer, app, client, console

ImagesArgument = Annotated[
    list[Path], typer.Argument(exists=True, dir_okay=False, help="PNG, JPEG, BMP or GIF files.")
]


@app.command()
def predict(job_id: str, images: ImagesArgument, api: ApiOption = "http://127.0.0.1:8000") -> None:
    """Classify IMAGEs with the job's weights (POST /v1/jobs/{id}/predict): each image's class
    and its probability, the images converted and resized as the job's dataset's were."""
    files = [("images", (path.name, path.read_bytes())) for path in images]
    with client(api) as http:
        found = answer(http.post(f"/v1/jobs/{job_id}/predict", files=files))
    table = Table("image", "class", "probability")
    for path, label, probabilities in zip(
        images, found["labels"], found["probabilities"], strict=True
    ):
        table.add_row(str(path), found["classes"][label], f"{probabilities[label]:.4f}")
    console.print(table)
