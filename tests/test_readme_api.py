"""The README's Python API example runs as it stands, on real MNIST digits written where it
expects them (train/ and samples/ with one folder per label, new.png)."""
import re
from pathlib import Path

from gmv_store.images import save_png

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_api_block() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section should hold one python block"
    return blocks[0]


def test_readme_python_api_example_runs(tmp_path, monkeypatch, mnist_small):
    x, y, xt, yt = mnist_small
    for folder, images, labels in (("train", x[::2], y[::2]), ("samples", xt[:20], yt[:20])):
        for i, (img, lab) in enumerate(zip(images, labels)):
            (tmp_path / folder / str(lab)).mkdir(parents=True, exist_ok=True)
            save_png(img[:, :, None], tmp_path / folder / str(lab) / f"{i:04d}.png")
    save_png(xt[30][:, :, None], tmp_path / "new.png")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(readme_api_block(), "README.md (Python API)", "exec"), ns)
    store = ns["store"]
    # what the example did, checked against the store it left
    assert len(ns["board"]) == 10 and ns["board"]["value"].is_monotonic_decreasing
    assert store.status()["training_images"] == 299  # 300 ingested, the best one forgotten
    assert (tmp_path / "exports" / "gan-v1" / "values.parquet").is_file()
    assert len(store.match(["new.png"], k=5)) == 5
