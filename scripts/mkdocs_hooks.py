"""mkdocs hook (mkdocs.yml ``hooks:``): links from docs/ to repository files outside docs/.

On GitHub such relative links (``../plugins/brokers/redis/README.md``, ``../examples/third_party_plugin``)
work; on the built site they would be dead. This hook checks that every such target exists in the
repository (a missing one is an error: the strict build fails) and rewrites the link to ``repo_url``'s
browse URL when mkdocs.yml sets ``repo_url``, else to the path as inline code.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.repo_links")
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>\.\.[^)\s#]*)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    root = docs_dir.parent
    page_dir = (docs_dir / page.file.src_path).parent
    repo_url = (config.get("repo_url") or "").rstrip("/")

    def fix(m: re.Match[str]) -> str:
        target = (page_dir / m["target"]).resolve()
        try:
            target.relative_to(docs_dir)
            return m.group(0)  # inside docs/: mkdocs validates it
        except ValueError:
            pass
        try:
            rel = target.relative_to(root)
        except ValueError:
            log.warning("%s: link %r points outside the repository", page.file.src_path, m["target"])
            return m.group(0)
        if not target.exists():
            log.warning("%s: link %r: no such file in the repository (%s)", page.file.src_path, m["target"], rel)
            return m.group(0)
        path = posixpath.join(*rel.parts)
        if repo_url:
            kind = "tree" if target.is_dir() else "blob"
            return f"[{m['text']}]({repo_url}/{kind}/main/{path}{m['anchor'] or ''})"
        text = m["text"]
        return text if text.startswith("`") else f"{text} (`{path}`)"

    return _LINK.sub(fix, markdown)
