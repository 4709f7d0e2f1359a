"""Generate what must list every plugin, from the plugins' own pyproject.toml files.

    python scripts/sync_plugins.py          # rewrite the generated blocks
    python scripts/sync_plugins.py --check  # exit 1 if any generated block is stale (CI)

Generated: the kernel's extras (one per plugin distribution, plus ``all``) and its uv workspace sources,
the plugin table in docs/plugins.md, and .ci/plugins.txt (the plugin folders CI expects tests in).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "kernel" / "pyproject.toml"
DOCS = ROOT / "docs" / "plugins.md"
CI_LIST = ROOT / ".ci" / "plugins.txt"


def plugins() -> list[dict[str, str]]:
    out = []
    for pp in sorted(ROOT.glob("plugins/*/*/pyproject.toml")):
        meta = tomllib.loads(pp.read_text())["project"]
        dist = meta["name"]
        eps = meta.get("entry-points", {}).get("boostkernel", {})
        out.append({
            "dist": dist, "extra": dist.removeprefix("boostkernel-"), "kind": pp.parent.parent.name,
            "path": str(pp.parent.relative_to(ROOT)), "summary": meta.get("description", ""),
            "entry_points": ", ".join(sorted(eps)),
        })
    return out


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"markers {begin!r} … {end!r} not found")
    return pattern.sub(lambda _: f"{begin}\n{body}{end}", text)


def render_kernel(text: str, ps: list[dict[str, str]]) -> str:
    extras = "".join(f'{p["extra"]} = ["{p["dist"]}"]\n' for p in ps)
    extras += "all = [\n" + "".join(f'    "{p["dist"]}",\n' for p in ps) + "]\n"
    text = replace_block(text, "# BEGIN GENERATED EXTRAS (scripts/sync_plugins.py)", "# END GENERATED EXTRAS", extras)
    sources = "".join(f'{p["dist"]} = {{ workspace = true }}\n' for p in ps)
    return replace_block(text, "# BEGIN GENERATED SOURCES (scripts/sync_plugins.py)", "# END GENERATED SOURCES",
                         sources)


def render_docs(text: str, ps: list[dict[str, str]]) -> str:
    rows = "| kind | distribution | extra | provides (entry point) | what it is |\n|---|---|---|---|---|\n"
    rows += "".join(f'| {p["kind"]} | [`{p["dist"]}`](../{p["path"]}/README.md) | `boostkernel[{p["extra"]}]` | '
                    f'`{p["entry_points"]}` | {p["summary"]} |\n' for p in ps)
    return replace_block(text, "<!-- BEGIN GENERATED PLUGIN TABLE (scripts/sync_plugins.py) -->",
                         "<!-- END GENERATED PLUGIN TABLE -->", rows)


def main() -> int:
    check = "--check" in sys.argv
    ps = plugins()
    targets = {
        KERNEL: render_kernel(KERNEL.read_text(), ps),
        DOCS: render_docs(DOCS.read_text(), ps),
        CI_LIST: "".join(p["path"] + "\n" for p in ps),
    }
    stale = [path for path, new in targets.items() if not path.exists() or path.read_text() != new]
    if check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run: python scripts/sync_plugins.py)", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(targets[path])
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
