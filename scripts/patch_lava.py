"""Apply the one source fix lava-nc 0.10.0 needs to import on Python 3.11.

lava-nc 0.10.0 (archived upstream, declared for Python < 3.11) has dataclasses in
``lava/magma/compiler/var_model.py`` whose fields default to a *mutable* dataclass instance
(``x: ByteEncoder = ByteEncoder()``). Python 3.11 rejects that at import time with
``ValueError: mutable default ... use default_factory``. We rewrite those defaults to
``field(default_factory=ByteEncoder)``, which is the behaviour the authors intended (each
encoder gets its own instance). The rewrite is idempotent and is verified by importing the
module afterwards. This is the only file of a third-party package we modify.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

_IMPORT_OLD = "from dataclasses import dataclass, InitVar\n"
_IMPORT_NEW = "from dataclasses import dataclass, InitVar, field\n"
_DEFAULT = re.compile(r"^(\s+\w+: ByteEncoder) = ByteEncoder\(\)$", re.MULTILINE)


def patch_var_model(path: Path) -> bool:
    """Rewrite the mutable defaults in ``path``; return True when the file changed."""
    text = path.read_text()
    patched = _DEFAULT.sub(r"\1 = field(default_factory=ByteEncoder)", text)
    if patched != text and _IMPORT_NEW not in patched:
        if _IMPORT_OLD not in patched:
            raise SystemExit(f"{path}: unexpected import line; lava-nc version changed?")
        patched = patched.replace(_IMPORT_OLD, _IMPORT_NEW, 1)
    if patched == text:
        return False
    path.write_text(patched)
    return True


def main() -> int:
    spec = importlib.util.find_spec("lava")
    if spec is None or not spec.submodule_search_locations:
        print("patch_lava: lava-nc is not installed", file=sys.stderr)
        return 1
    root = Path(next(iter(spec.submodule_search_locations)))
    target = root / "magma" / "compiler" / "var_model.py"
    changed = patch_var_model(target)
    print(f"patch_lava: {target} {'patched' if changed else 'already patched'}")
    import lava.magma.compiler.var_model  # noqa: F401  (fails loudly if the fix did not take)

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
