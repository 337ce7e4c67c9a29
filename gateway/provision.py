"""First-boot provisioning: install a home's config from the SD card's boot partition.

Kits are flashed with one image; what makes a gateway belong to a home is its config and
secrets. The installer (or the warehouse) copies them onto the boot partition, the one
folder any laptop can write (``/boot/firmware/anxin/`` on Raspberry Pi OS Bookworm). On
the next boot ``anxin provision`` (run by ``anxin-provision.service``) installs them into
``/etc/anxin``, checks the result exactly as ``anxin run`` would, and then:

- on success removes the secrets from the card (a FAT partition has no permissions: any
  reader of the card could copy them), renames ``gateway.toml`` to
  ``gateway.toml.installed`` so it runs once, and leaves ``PROVISIONED.txt`` saying what
  was installed;
- on a bad config puts the previous files back, leaves the card as it was, and writes
  ``ERROR.txt`` with the message (file, line, key) for the installer to read on a laptop.

Files are replaced one by one with a write to a temporary name, fsync and rename, and
the previous versions are kept in ``/etc/anxin/.backup-<time>/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway import config
from gateway.errors import ConfigError

CONFIG_NAME = "gateway.toml"
RESULT_OK = "PROVISIONED.txt"
RESULT_ERROR = "ERROR.txt"
# Files whose content is secret: 0600 in /etc/anxin, wiped from the card after install.
_SECRET_SUFFIXES = (".key",)
_SECRET_NAMES = ("secrets.toml",)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    installed: tuple[str, ...]
    message: str


def _is_secret(name: str) -> bool:
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


def _candidates(source: Path) -> list[Path]:
    skip = {RESULT_OK, RESULT_ERROR}
    return sorted(
        p for p in source.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in skip
        and not p.name.endswith(".installed")
    )


def _install_file(src: Path, dst: Path, mode: int, owner: tuple[int, int] | None) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    data = src.read_bytes()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dst)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _wipe(path: Path) -> None:
    """Overwrite, then delete. On flash the old blocks may survive; the file name does not."""
    with contextlib.suppress(OSError):
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
    path.unlink(missing_ok=True)


def _owner(name: str | None) -> tuple[int, int] | None:
    if name is None:
        return None
    import pwd

    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"user {name!r} does not exist (install.sh creates it)") from None
    return pw.pw_uid, pw.pw_gid


def provision(source: Path, target: Path, *, owner: str | None = None,
              now: datetime | None = None) -> Outcome:
    """Install ``source``'s files into ``target`` if the result is a valid config."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    if not (source / CONFIG_NAME).is_file():
        raise ConfigError(f"nothing to provision: no {CONFIG_NAME} in {source}")
    uid_gid = _owner(owner)
    target.mkdir(parents=True, exist_ok=True)
    files = _candidates(source)
    backup = target / f".backup-{stamp}"
    replaced: list[str] = []
    created: list[str] = []
    for src in files:
        dst = target / src.name
        if dst.exists():
            backup.mkdir(mode=0o700, exist_ok=True)
            shutil.copy2(dst, backup / src.name)
            replaced.append(src.name)
        else:
            created.append(src.name)
        secret = _is_secret(src.name)
        _install_file(src, dst, 0o600 if secret else 0o644, uid_gid if secret else None)
    _fsync_dir(target)
    try:
        cfg = config.load(target / CONFIG_NAME)
    except ConfigError as exc:
        for name in replaced:
            os.replace(backup / name, target / name)
        for name in created:
            (target / name).unlink(missing_ok=True)
        _fsync_dir(target)
        with contextlib.suppress(OSError):
            backup.rmdir()
        message = (
            f"{stamp}: the config on this card was NOT installed; the gateway keeps its "
            f"previous config.\n\n{exc}\n\n(The path above is where it was checked; the "
            f"file is {source.name}/{Path(exc.path or CONFIG_NAME).name} on this card.) "
            "Fix it and boot again.\n"
        )
        (source / RESULT_ERROR).write_text(message, encoding="utf-8")
        return Outcome(False, (), message)
    for src in files:
        if _is_secret(src.name):
            _wipe(src)
    digest = hashlib.sha256((target / CONFIG_NAME).read_bytes()).hexdigest()[:16]
    os.replace(source / CONFIG_NAME, source / (CONFIG_NAME + ".installed"))
    (source / RESULT_ERROR).unlink(missing_ok=True)
    names = ", ".join(p.name for p in files)
    message = (
        f"{stamp}: installed {names} into {target}\n"
        f"gateway {cfg.gateway.id}, home {cfg.gateway.home}, {len(cfg.sensors)} sensors, "
        f"{len(cfg.rooms)} rooms; config sha256 {digest}…\n"
        + ("secrets were removed from this card.\n" if any(_is_secret(p.name) for p in files)
           else "")
        + (f"previous files kept in {backup}\n" if replaced else "")
    )
    (source / RESULT_OK).write_text(message, encoding="utf-8")
    return Outcome(True, tuple(p.name for p in files), message)

