"""The docs site's generated pages, built the way ``make docs`` builds them (docs/hooks/generate.py)."""

from __future__ import annotations

import importlib.util

from fairwatch.testing.stack import REPO


def configuration_page() -> str:
    """The configuration reference page (markdown), from the settings' own definitions."""
    spec = importlib.util.spec_from_file_location("fairwatch_docs_generate", REPO / "docs" / "hooks" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    return generate.configuration_markdown()
