"""The apprise notifier, posting to a real HTTP server on 127.0.0.1 (apprise's json:// service)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway import config
from gateway.clock import Clock
from gateway.errors import TransientError
from gateway.model import Alert, AlertType
from gateway.notify.channels import AppriseNotifier, build_notifiers


class Hook:
    def __init__(self) -> None:
        self.posts: list[dict[str, object]] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append(json.loads(body))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def load(tmp_path: Path, urls: list[str]) -> config.Config:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("notify_urls = [" + ", ".join(f'"{u}"' for u in urls) + "]\n")
    secrets.chmod(0o600)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('secrets_file = "secrets.toml"\n[gateway]\nid = "gw-1"\nhome = "home-1"\n'
                   '[[rooms]]\nid = "bath"\nname = "卫生间"\n')
    return config.load(str(cfg))


async def test_unhandled_fall_is_posted_to_the_family_service(tmp_path: Path, hook: Hook) -> None:
    cfg = load(tmp_path, [f"json://127.0.0.1:{hook.port}/family"])
    notifiers = build_notifiers(cfg)
    assert [n.name for n in notifiers] == ["log", "apprise"]
    alert = Alert.raise_(AlertType.FALL, Clock().now(), room="bath")
    await notifiers[1].notify(alert, attempt=3)
    (post,) = hook.posts
    assert "卫生间" in str(post["message"])
    assert "疑似跌倒" in str(post["message"])
    assert "第3次" in str(post["message"])
    # Tokens in the URLs are secrets: the printed config shows the scheme only.
    assert config.to_dict(cfg)["secrets"]["notify_urls"] == ["json://***"]


async def test_a_refusing_service_is_an_error_for_the_escalation(tmp_path: Path, hook: Hook) -> None:
    hook.status = 500
    cfg = load(tmp_path, [f"json://127.0.0.1:{hook.port}/family"])
    with pytest.raises(TransientError, match="no service accepted"):
        await AppriseNotifier(cfg, cfg.secrets.notify_urls).notify(
            Alert.raise_(AlertType.EMERGENCY_BUTTON, Clock().now()), attempt=1
        )


def test_an_unknown_url_is_logged_and_the_rest_still_work(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = load(tmp_path, ["nosuchservice://token"])
    assert [n.name for n in build_notifiers(cfg)] == ["log"]
    assert "does not understand the notify URL nosuchservice://" in caplog.text
