"""The README's settings table and the Settings class describe the same knobs."""

from __future__ import annotations

import re
from pathlib import Path

from fanslymotion.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| `?([^|`]*)`? \|", README.read_text(), re.MULTILINE)
    documented = {name: default.strip() for name, default in rows}
    fields = {name.upper(): field for name, field in Settings.model_fields.items()}
    assert sorted(documented) == sorted(fields)
    for name, field in fields.items():
        default = field.default
        if default is None or default == "" or default == []:
            continue  # written as "empty" or "unset" in the table
        text = documented[name]
        if isinstance(default, bool):
            assert text == str(default).lower(), name
        elif isinstance(default, int | float):
            assert float(text) == default, name
        elif isinstance(default, str):
            assert text == default, name
