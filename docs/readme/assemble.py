"""Rebuild README.md from the sections in docs/readme/ (run after editing a section).

README.md is what users read; the sections live here so each part of the system keeps its own
text next to the others. `python docs/readme/assemble.py`
"""

import pathlib

HERE = pathlib.Path(__file__).parent
ORDER = [
    "config", "levels", "mapping", "odata", "sources", "soap", "check", "cycle", "site", "notify",
    "service", "instances", "simulator", "proof", "crash", "faults", "badinput", "performance",
]  # fmt: skip


def main() -> None:
    parts = [(HERE / f"{name}.md").read_text("utf-8").strip() + "\n" for name in ORDER if (HERE / f"{name}.md").exists()]
    head = (HERE / "_head.md").read_text("utf-8").rstrip()
    tail = (HERE / "_tail.md").read_text("utf-8")
    (HERE.parents[1] / "README.md").write_text(head + "\n\n" + "\n".join(parts) + tail, "utf-8")


if __name__ == "__main__":
    main()
