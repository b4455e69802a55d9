"""Doctor's check results and their rendering (one line per check, or JSON)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_TIMEOUT_S = 5.0
# A trust bundle this close to expiry is a warning: there is still time to get a new one.
BUNDLE_WARN_S = 14 * 86400.0
DISK_WARN_BYTES = 100 * 1024 * 1024
DISK_FAIL_BYTES = 10 * 1024 * 1024
# The account the systemd unit runs relayd as (config/systemd/relayd.service, User=relayd).
SERVICE_USER = "relayd"


class Level(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    level: Level
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.level.value:<5} {self.check:<10} {self.detail}"
        return f"{text} — {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, str | None]:
        return {"check": self.check, "level": self.level.value, "detail": self.detail, "fix": self.fix}


def ok(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Level.OK, detail)


def warn(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, Level.WARN, detail, fix)


def fail(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, Level.FAIL, detail, fix)


def exit_code(results: list[CheckResult]) -> int:
    return 1 if any(r.level is Level.FAIL for r in results) else 0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def days(seconds: float) -> str:
    days = seconds / 86400.0
    return f"{days:.0f} days" if days >= 2 else f"{seconds / 3600.0:.0f} hours"


def render_text(results: list[CheckResult]) -> str:
    return "\n".join(r.line() for r in results)


def render_json(results: list[CheckResult]) -> str:
    doc = {"ok": exit_code(results) == 0, "checks": [r.to_json() for r in results]}
    return json.dumps(doc, indent=2, ensure_ascii=False)
