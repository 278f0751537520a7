"""MkDocs hook: docstrings in ``gpunet/`` cross-reference in Sphinx's style (``:func:`load_spec```,
``:class:`~gpunet.deploy.DeployedModel```), which mkdocstrings renders literally. After rendering,
drop the role prefix and the ``~`` so the page shows the name as code."""
from __future__ import annotations

import re

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):(?=<code>)")
_TILDE = re.compile(r"<code>~(?=[A-Za-z_])")


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs hook signature)
    return _TILDE.sub("<code>", _ROLE.sub("", html))
