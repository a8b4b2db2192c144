"""Versioned, itemised notices (compliance/notices/*.yaml): data, not code, in English and Eighth-Schedule languages.

A notice version is named `<notice>@<version>` (e.g. `lead-processing@1`); its digest (sha256 of its canonical
JSON) is recorded in compliance.notices when first published, so a version edited afterwards is refused.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.config import Settings

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)

NOTICES_DIR = Path(__file__).resolve().parent / "notices"
PURPOSES = ("scoring", "marketing_contact", "text_analysis", "parental_consent")  # compliance.consent's CHECK
REQUIRED_LANGUAGES = ("en",)


class NoticeError(ValueError):
    """A notice that cannot be used; the message says which and why."""


class PurposeItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data_items: list[str] = Field(min_length=1)
    retention_days: int = Field(ge=1)


class Text(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    purposes: dict[str, str]
    retention: str
    withdraw: str
    rights: str
    complain: str


class Version(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    published: date
    purposes: dict[str, PurposeItem]
    languages: dict[str, Text]

    @model_validator(mode="after")
    def _complete(self) -> Version:
        unknown = sorted(set(self.purposes) - set(PURPOSES))
        if unknown:
            raise ValueError(f"unknown purposes {unknown}: the product knows {list(PURPOSES)}")
        missing = [lang for lang in REQUIRED_LANGUAGES if lang not in self.languages]
        if missing or len(self.languages) < 2:
            raise ValueError("a notice needs English and at least one Eighth-Schedule language")
        for lang, text in self.languages.items():
            if set(text.purposes) != set(self.purposes):
                raise ValueError(f"language {lang!r} describes purposes {sorted(text.purposes)}, "
                                 f"the notice has {sorted(self.purposes)}")
        return self

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True,
                                         ensure_ascii=False).encode()).hexdigest()


class Notice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notice: str
    versions: list[Version] = Field(min_length=1)


@cache
def load(folder: Path = NOTICES_DIR) -> dict[str, Version]:
    """`<notice>@<version>` -> that version, for every notice file in `folder`."""
    import yaml

    out: dict[str, Version] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            notice = Notice.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(file)"
            raise NoticeError(f"{path.name}: {where}: {first['msg']}") from None
        except (OSError, yaml.YAMLError) as exc:
            raise NoticeError(f"{path.name}: {exc}".splitlines()[0]) from None
        for version in notice.versions:
            out[f"{notice.notice}@{version.version}"] = version
    return out


def current(notice: str = "lead-processing") -> str:
    """The newest version of `notice`."""
    found = [k for k in load() if k.split("@")[0] == notice]
    if not found:
        raise NoticeError(f"no notice {notice!r} in {NOTICES_DIR}")
    return max(found, key=lambda k: int(k.split("@")[1]))


def check(notice_version: str, purpose: str) -> None:
    """Raise NoticeError unless `notice_version` exists and covers `purpose`."""
    versions = load()
    if notice_version not in versions:
        raise NoticeError(f"unknown notice version {notice_version!r}: known are {sorted(versions)}")
    if purpose not in versions[notice_version].purposes:
        raise NoticeError(f"notice {notice_version} does not cover purpose {purpose!r}")


def publish(settings: Settings) -> list[str]:
    """Record every notice version's digest (new ones only); refuse a published version whose text changed."""
    import psycopg

    added = []
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        recorded = dict(conn.execute("SELECT notice_version, sha256 FROM compliance.notices").fetchall())
        for name, version in load().items():
            digest = version.digest()
            if name in recorded and recorded[name] != digest:
                raise NoticeError(f"notice {name} was edited after it was published: restore it and add a new "
                                  "version instead")
            if name not in recorded:
                conn.execute("INSERT INTO compliance.notices (notice_version, sha256, languages, purposes) "
                             "VALUES (%s, %s, %s, %s)", (name, digest, sorted(version.languages),
                                                         sorted(version.purposes)))
                added.append(name)
    return added


def render(notice_version: str, language: str) -> str:
    """The notice as plain text in `language`."""
    versions = load()
    if notice_version not in versions:
        raise NoticeError(f"unknown notice version {notice_version!r}: known are {sorted(versions)}")
    version = versions[notice_version]
    if language not in version.languages:
        raise NoticeError(f"notice {notice_version} has no {language!r} text: it has {sorted(version.languages)}")
    text = version.languages[language]
    lines = [f"{text.title} ({notice_version}, {version.published})", ""]
    for purpose, item in version.purposes.items():
        lines += [f"- {purpose}: {text.purposes[purpose]}", f"  data: {', '.join(item.data_items)}; "
                  f"kept {item.retention_days} days"]
    return "\n".join([*lines, "", text.retention, text.withdraw, text.rights, text.complain])
