"""The rollcap.toml schema.

Every field's ``description`` is operator documentation: the shipped sample
config, docs/config.md and the rollcap.toml(5) man page are all generated from
these models (see ``rollcap.config.render``), so they cannot disagree.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rollcap import sizes

# A key in millions of bytes: a whole number, or a size such as "20G" (rollcap.sizes)
Megabytes = Annotated[int, BeforeValidator(sizes.megabytes)]

# Linux interface names: at most 15 bytes, no '/', no whitespace. We are stricter
# (no shell metacharacters at all) because the name ends up in file names and keys.
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.@:+-]{1,15}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# S3 object tags: AWS allows 10 per object, keys of 1-128 and values of 0-256
# characters from letters, digits, space and + - = . _ : / @.
_TAG_RE = re.compile(r"^[\w +\-=.:/@]*$")
MAX_STATIC_TAGS = 7  # S3's 10, less the three rollcap adds (ROLLCAP_TAG_KEYS)
ROLLCAP_TAG_KEYS = ("host", "iface", "source")
# AWS KMS key: a key id, a multi-region key id, an alias, or the ARN of either
_KMS_KEY_RE = re.compile(
    r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]{1,128}|alias/[A-Za-z0-9/_-]{1,250})"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]{1,250})$"
)
StorageClass = Literal[
    "", "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR",
    "GLACIER", "DEEP_ARCHIVE", "REDUCED_REDUNDANCY", "EXPRESS_ONEZONE",
]  # fmt: skip

KEY_PLACEHOLDERS = ("prefix", "host", "iface", "start", "seq", "ext")
DEFAULT_KEY_TEMPLATE = (
    "{prefix}/{host}/{start:%Y}/{start:%m}/{start:%d}/"
    "{host}-{iface}-{start:%Y%m%dT%H%M%SZ}-{seq:06d}{ext}"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True)


class InterfaceOverride(_Section):
    """[capture.per_interface.NAME]: what differs for one interface."""

    filter: str | None = Field(
        None, description="This interface's BPF filter instead of capture.filter."
    )
    snaplen: int | None = Field(
        None, ge=64, le=262144, description="This interface's snaplen instead of capture.snaplen."
    )

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: str | None) -> str | None:
        return None if v is None else _check_filter(v)


def _check_filter(v: str) -> str:
    if any(ord(c) < 0x20 and c not in "\t\n" for c in v) or "\x7f" in v:
        raise ValueError("must not contain control characters")
    if len(v) > 8192:
        raise ValueError("must be at most 8192 characters")
    return v


class CaptureConfig(_Section):
    """What tcpdump captures and how often its files rotate."""

    interface: str | list[str] = Field(
        "any",
        description='Interface to capture on (tcpdump -i): "any", an interface name, or a '
        'list of names (interface = ["eth0", "eth1"]): one tcpdump per interface, each '
        "supervised on its own, all in one spool and one budget.",
    )
    filter: str = Field(
        "",
        description="BPF filter expression. Passed to tcpdump as arguments, never through "
        "a shell; compiled with tcpdump -d before capture starts.",
    )
    snaplen: int = Field(
        262144, ge=64, le=262144, description="Bytes kept of each packet (tcpdump -s)."
    )
    rotate_seconds: int = Field(
        600,
        ge=10,
        le=86400,
        description="Start a new file every this many seconds: at UTC multiples of it "
        "(rotate_align), else this long after the file opened (tcpdump -G). rollcap also "
        "rotates a quiet link, where tcpdump alone would keep the file open forever.",
    )
    rotate_megabytes: Megabytes = Field(
        1000,
        ge=1,
        le=100000,
        description="Start a new file after this many millions of bytes (tcpdump -C).",
    )
    timestamp_precision: Literal["micro", "nano"] = Field(
        "micro",
        description='Packet timestamps in the capture files: "micro" (microseconds, the '
        'classic pcap every tool reads) or "nano" (nanoseconds: tcpdump runs with '
        "nanosecond time stamp precision and writes pcap magic a1b23c4d; Wireshark, tshark "
        "and tcpdump read both). Kept to the nanosecond in the object metadata, rollcap "
        "list and rollcap fetch, which writes nanoseconds when any source has them.",
    )
    buffer_kib: int = Field(
        32768,
        ge=0,
        le=4194304,
        description="Kernel capture buffer in KiB (tcpdump -B). 32 MiB holds about a second "
        "of a busy link while compression or a slow disk holds tcpdump up; libpcap's own "
        "default (0 here) is 2 MiB. Raise it if the journal reports kernel drops.",
    )
    user: str = Field(
        "tcpdump",
        description="Only when rollcap capture is started as root (by hand, outside the "
        "packaged unit): the user tcpdump switches to after opening the interface "
        "(tcpdump -Z). The packaged service runs the daemon and tcpdump as the "
        "unprivileged user rollcap-capture, with CAP_NET_RAW only, and ignores this key.",
    )
    hostname: str = Field(
        "",
        description="Host name written into file names and object keys; empty means the "
        "machine's short host name.",
    )
    exclude_offload_traffic: bool = Field(
        True,
        description="When the destination is a network endpoint, add a filter clause that "
        "excludes the offload service's own connections to it, so uploads are not "
        "captured again.",
    )
    tcpdump_path: str = Field("/usr/bin/tcpdump", description="The tcpdump binary to run.")
    rotate_align: bool = Field(
        True,
        description="Cut files at UTC multiples of rotate_seconds (600: files open at :00, "
        ":10, :20), the same on every host; only the first file after a start or a restart "
        "is shorter. rotate_megabytes still cuts earlier. false: every file runs "
        "rotate_seconds from its own start (tcpdump -G alone).",
    )
    per_interface: dict[str, InterfaceOverride] = Field(
        default_factory=dict,
        description="Settings of single interfaces that differ from the ones above, as "
        "[capture.per_interface.NAME] tables with filter and/or snaplen (NAME must be in "
        "interface). Remove the empty per_interface = {} line before adding such a table.",
    )

    @field_validator("interface", mode="before")
    @classmethod
    def _interface(cls, v: object) -> object:
        names = [v] if isinstance(v, str) else v
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError('must be a string or a list of strings ("eth0" or ["eth0", "eth1"])')
        if not names:
            raise ValueError("must name at least one interface")
        for n in names:
            if not _IFACE_RE.fullmatch(n):
                raise ValueError(
                    '"any" or interface names of 1-15 characters from A-Z a-z 0-9 _ . @ : + -'
                )
        if len(set(names)) != len(names):
            raise ValueError("must not name an interface twice")
        if len(names) > 1 and "any" in names:
            raise ValueError('"any" already captures every interface: use it alone')
        return v

    @property
    def interfaces(self) -> list[str]:
        """capture.interface as a list."""
        return [self.interface] if isinstance(self.interface, str) else list(self.interface)

    def for_interface(self, name: str) -> CaptureConfig:
        """This config for one interface alone, its per_interface overrides applied:
        what one tcpdump runs with."""
        o = self.per_interface.get(name)
        update: dict[str, object] = {"interface": name, "per_interface": {}}
        if o is not None and o.filter is not None:
            update["filter"] = o.filter
        if o is not None and o.snaplen is not None:
            update["snaplen"] = o.snaplen
        return self.model_copy(update=update)

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: str) -> str:
        return _check_filter(v)

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not _USER_RE.fullmatch(v):
            raise ValueError("a system user name (lowercase letters, digits, _ and -)")
        return v

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, v: str) -> str:
        if v and not _HOST_RE.fullmatch(v):
            raise ValueError("a host name of letters, digits, '.' and '-' (at most 63)")
        if ".." in v:
            raise ValueError("must not contain '..'")
        return v

    @field_validator("tcpdump_path")
    @classmethod
    def _tcpdump_path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("an absolute path")
        return v


class SpoolConfig(_Section):
    """Where capture files wait for offload, and how much room they may take."""

    directory: str = Field(
        "/var/spool/rollcap",
        description="Spool directory. tcpdump writes into work/, finished files wait in "
        "ready/, files that are not valid pcap go to quarantine/.",
    )
    max_megabytes: Megabytes = Field(
        10000,
        ge=10,
        le=100_000_000,
        description="Budget in millions of bytes for everything in the spool. When it is "
        "reached, on_full decides what happens.",
    )
    min_free_percent: float = Field(
        10,
        ge=0,
        le=90,
        description="Never leave the spool's filesystem with less free space than this. "
        "Below it capture pauses (and warns) until there is room again; it never deletes "
        "captures because something else filled the disk.",
    )
    on_full: Literal["drop-oldest", "pause-capture"] = Field(
        "drop-oldest",
        description='When the spool itself exceeds max_megabytes: "drop-oldest" deletes the '
        "oldest finished files, no more than the spool's own overage (a ring buffer); "
        '"pause-capture" stops tcpdump until space returns.',
    )
    quarantine_megabytes: Megabytes = Field(
        500,
        ge=1,
        le=100_000_000,
        description="Cap in millions of bytes for quarantine/ (files refused as not pcap, "
        "symlinks, ...). Over it, the oldest entries are removed first, each logged.",
    )
    group: str = Field(
        "rollcap",
        description="Group that owns finished files; the offload service's user must be in "
        "it. Captures are never world-readable.",
    )

    @field_validator("directory")
    @classmethod
    def _directory(cls, v: str) -> str:
        p = PurePosixPath(v)
        if not p.is_absolute() or ".." in p.parts:
            raise ValueError("an absolute path without '..'")
        if str(p) == "/":
            raise ValueError("must not be the root directory")
        return str(p)

    @field_validator("group")
    @classmethod
    def _group(cls, v: str) -> str:
        if not _USER_RE.fullmatch(v):
            raise ValueError("a system group name (lowercase letters, digits, _ and -)")
        return v


class OffloadConfig(_Section):
    """Where finished captures go and how they get there."""

    destination: str = Field(
        "file:///var/lib/rollcap/archive",
        description='"file:///absolute/path" for a local archive (the default, no cloud '
        'account needed) or "s3://bucket/prefix" for S3 and S3-compatible servers. S3 '
        "credentials come from the standard AWS chain (environment, ~/.aws, instance "
        "role) or, preferably, from a systemd credential: put an AWS shared-credentials "
        "file with a [default] profile at /etc/credstore/rollcap-s3-credentials (mode "
        "0600, root) and the unit's LoadCredential=s3-credentials:rollcap-s3-credentials "
        "hands it to the offload service alone. `rollcap check-destination` tests every "
        "permission the offload needs and prints a least-privilege IAM policy for this "
        "host's own part of the prefix.",
    )
    endpoint_url: str = Field(
        "",
        description="S3-compatible endpoint, e.g. http://127.0.0.1:8333; empty means AWS.",
    )
    region: str = Field("", description="S3 region; empty uses the AWS default chain.")
    compression: Literal["zstd", "gzip", "none"] = Field(
        "zstd",
        description="Compression before upload. Wireshark, tshark and capinfos read "
        ".pcap.zst and .pcap.gz directly.",
    )
    compression_level: int = Field(
        0,
        ge=0,
        le=19,
        description="Compression level; 0 means the codec's default (zstd 3, gzip 6).",
    )
    compression_fast_backlog: int = Field(
        4,
        ge=0,
        le=100_000,
        description="When more than this many files wait in ready/, compress at the codec's "
        "fastest level (zstd 1) until half as many are left, then at compression_level "
        "again: a backlog drains about twice as fast for 1-11% more stored bytes. "
        "0 keeps compression_level fixed.",
    )
    yield_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="Capture first: after capture reports new kernel drops (in its metrics "
        "textfile, so only with metrics.textfile_directory set), start no compression for "
        "this many seconds; uploads of files already compressed go on. A pause lasts at "
        "most 120 s, then compression runs for at least 30 s. Files wait in ready/ in "
        "their order. 0 turns this off.",
    )
    yield_dirty_percent: int = Field(
        80,
        ge=0,
        le=1000,
        description="Capture first: while capture runs on this host (its metrics textfile "
        "is fresh), start no compression while the host's dirty and writeback pages are at "
        "least this percent of the point where the kernel starts throttling writers "
        "(tcpdump too), until they fall to half of it; capped as yield_seconds. 0 turns "
        "this off.",
    )
    concurrency: int = Field(
        4, ge=1, le=64, description="Files (and multipart parts) transferred in parallel."
    )
    # Off by default until it is cheap enough to leave on: measured on a loaded
    # machine, the offload drains 0.77-1.02x (bench mix) and 0.66-1.05x (small
    # packets) with it, for +13-38 % client CPU (docs/flows.md, Cost).
    flow_index: bool = Field(
        False,
        description="Write a flow summary beside every stored capture (gzip NDJSON below "
        "{prefix}/_index/flows/v1/, docs/flows.md), built from the same read that "
        "compresses it. A capture is deleted locally only once its summary is stored. "
        "Off by default: it costs the offload CPU (docs/flows.md, Cost).",
    )
    flow_index_max_flows: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="Flows kept per capture's summary; beyond this the summary keeps only "
        "the addresses and ports it saw and marks itself incomplete.",
    )
    key_template: str = Field(
        DEFAULT_KEY_TEMPLATE,
        description="Object key (or path below a file:// archive). Placeholders: {prefix} "
        "{host} {iface} {start:STRFTIME} {seq:FORMAT} {ext}. Keys never leave the prefix.",
    )
    archive_max_megabytes: Megabytes = Field(
        50000,
        ge=1,
        le=100_000_000,
        description="file:// only: size budget of the local archive; the oldest objects "
        "are removed first, so a default install is a self-maintaining ring.",
    )
    rescan_seconds: int = Field(
        60,
        ge=1,
        le=3600,
        description="Rescan ready/ this often as a backstop for missed inotify events.",
    )
    keep_poll_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description="Look for fleet keep requests (`rollcap keep --fleet`) below the "
        "destination's prefix this often: one LIST per poll (1,440 a day at 60 s), one GET "
        "and one PUT per request that names this host. 0: never.",
    )
    retry_max_seconds: int = Field(
        300,
        ge=1,
        le=3600,
        description="Cap of the jittered exponential backoff between retries of a failed "
        "upload. Failures are retried forever; the spool budget bounds the backlog.",
    )
    s3_part_megabytes: Megabytes = Field(
        64,
        ge=5,
        le=5000,
        description="S3 multipart part size in MiB. Compressed files of at least this size "
        "(and at least 8 MiB) are uploaded in parts, offload.concurrency parts at a time; "
        "smaller ones in a single PUT whose SHA-256 the server verifies. Parts go from "
        "memory: up to offload.concurrency x this size (at least 8 MiB) is held at once.",
    )
    s3_checksums: Literal["when_required", "when_supported"] = Field(
        "when_required",
        description="botocore's request_checksum_calculation and "
        'response_checksum_validation. boto3 >= 1.36 defaults to "when_supported" (a '
        "CRC32 on every request), which several S3-compatible servers reject; "
        '"when_required" avoids that. rollcap sends its own SHA-256 either way: the '
        "server verifies it on single PUTs (x-amz-checksum-sha256) and on each part of "
        "a multipart upload, and rollcap compares size, metadata and the server's "
        "checksum by HEAD before it deletes the local file.",
    )

    storage_class: StorageClass = Field(
        "",
        description="S3 storage class of every object (x-amz-storage-class), by its AWS "
        "name; empty leaves it to the bucket (STANDARD on AWS). GLACIER and DEEP_ARCHIVE "
        "objects must be restored before `rollcap fetch` can read them. Checked by HEAD "
        "before the local file is deleted.",
    )
    sse: Literal["", "AES256", "aws:kms"] = Field(
        "",
        description='Server-side encryption requested for every object: "AES256" (SSE-S3) '
        'or "aws:kms" (SSE-KMS, with sse_kms_key_id); empty leaves it to the bucket\'s '
        "default encryption. Checked by HEAD before the local file is deleted.",
    )
    sse_kms_key_id: str = Field(
        "",
        description='With sse = "aws:kms": the KMS key (key id, alias/NAME or ARN); empty '
        "uses the account's aws/s3 key. The offload then also needs kms:GenerateDataKey "
        "and kms:Decrypt on that key (see `rollcap check-destination`).",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Static S3 object tags for cost allocation and lifecycle rules, e.g. "
        'tags = { team = "netops", env = "prod" }. At most 7 (S3 allows 10 per object); '
        'the keys "host", "iface" and "source" are rollcap\'s own (rollcap_tags). Sent '
        "with every upload and checked with GetObjectTagging before the local file is deleted.",
    )
    rollcap_tags: bool = Field(
        True,
        description="Tag every S3 object with host, iface (from its file name) and "
        'source = "rollcap": few distinct values, so lifecycle rules and cost reports can '
        "select by them. Tagging needs s3:PutObjectTagging (and s3:GetObjectTagging for "
        "the check).",
    )
    object_lock_mode: Literal["", "GOVERNANCE", "COMPLIANCE"] = Field(
        "",
        description="S3 Object Lock retention for every object (the bucket must have been "
        "created with Object Lock): GOVERNANCE (only principals with "
        "s3:BypassGovernanceRetention may shorten it) or COMPLIANCE (nobody can, not even "
        "the root account). Needs s3:PutObjectRetention. Checked by HEAD before the local "
        "file is deleted.",
    )
    object_lock_days: int = Field(
        0,
        ge=0,
        le=36500,
        description="With object_lock_mode: days each object stays locked after its upload "
        "(at least 1); 0 without it.",
    )
    mode: Literal["continuous", "on-demand"] = Field(
        "continuous",
        description='"continuous" uploads every finished file. "on-demand" makes the spool a '
        "flight recorder: finished files stay in it as a ring (spool.on_full = "
        '"drop-oldest"), and only the files a keep holds are uploaded (`rollcap keep`, '
        "[keep]; docs/capture.md).",
    )

    @field_validator("destination")
    @classmethod
    def _destination(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme == "file":
            if u.netloc not in ("", "localhost"):
                raise ValueError("file:// URLs take an absolute path: file:///var/lib/...")
            p = PurePosixPath(u.path)
            if not p.is_absolute() or ".." in p.parts or str(p) == "/":
                raise ValueError("file:// needs an absolute path without '..'")
            if u.query or u.fragment:
                raise ValueError("file:// URLs take no query or fragment")
            return v
        if u.scheme == "s3":
            if "@" in v:  # also "key:pass/word@bucket", which urlsplit cuts at the '/
                raise ValueError(
                    "credentials must not be written into the URL; use the AWS credential "
                    "chain or LoadCredential="
                )
            if not _BUCKET_RE.fullmatch(u.netloc):
                raise ValueError(
                    "s3://BUCKET/prefix with a valid bucket name (3-63 of a-z 0-9 . -)"
                )
            prefix = u.path.strip("/")
            if not _PREFIX_RE.fullmatch(prefix) or ".." in prefix.split("/") or "//" in prefix:
                raise ValueError("the prefix may use A-Z a-z 0-9 ! _ . * ' ( ) - / and no '..'")
            if u.query or u.fragment:
                raise ValueError("s3:// URLs take no query or fragment")
            return v
        raise ValueError('"file:///path" or "s3://bucket/prefix"')

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v:
            return v
        u = urlsplit(v)
        if "@" in v:  # before any other check, whose message might be less clear
            raise ValueError("credentials must not be written into the URL")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("an http:// or https:// URL, e.g. http://127.0.0.1:8333")
        if u.username or u.password:
            raise ValueError("credentials must not be written into the URL")
        try:
            u.port  # noqa: B018 - raises on a bad port
        except ValueError as e:
            raise ValueError(f"bad port: {e}") from None
        return v

    @field_validator("storage_class", "sse", "object_lock_mode", "tags")
    @classmethod
    def _s3_only(cls, v: object, info: ValidationInfo) -> object:
        # an invalid destination is reported on its own, not again here
        if v and not str(info.data.get("destination", "s3://")).startswith("s3://"):
            raise ValueError("only for s3:// destinations")
        return v

    @field_validator("sse_kms_key_id")
    @classmethod
    def _kms_key(cls, v: str, info: ValidationInfo) -> str:
        if not v:
            return v
        if info.data.get("sse", "aws:kms") != "aws:kms":  # (an invalid sse: said there)
            raise ValueError('only with sse = "aws:kms"')
        if not _KMS_KEY_RE.fullmatch(v):
            raise ValueError(
                "a KMS key id (1234abcd-12ab-34cd-56ef-1234567890ab or mrk-...), "
                "alias/NAME, or a key or alias ARN"
            )
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_STATIC_TAGS:
            raise ValueError(f"at most {MAX_STATIC_TAGS} tags (S3 allows 10; rollcap adds 3)")
        for k, val in v.items():
            if k in ROLLCAP_TAG_KEYS:
                raise ValueError(f"tag {k!r} is rollcap's own (see rollcap_tags)")
            if not 1 <= len(k) <= 128 or k.lower().startswith("aws:") or not _TAG_RE.fullmatch(k):
                raise ValueError(
                    f"tag key {k!r}: 1-128 of letters, digits, space and + - = . _ : / @, "
                    "not starting with aws:"
                )
            if len(val) > 256 or not _TAG_RE.fullmatch(val):
                raise ValueError(
                    f"tag {k!r}: the value may have up to 256 of letters, digits, space and "
                    "+ - = . _ : / @"
                )
        return v

    @field_validator("object_lock_days")
    @classmethod
    def _lock_days(cls, v: int, info: ValidationInfo) -> int:
        if "object_lock_mode" not in info.data:
            return v  # invalid itself, and said so
        mode = info.data["object_lock_mode"]
        if mode and v < 1:
            raise ValueError(f"must be at least 1 with object_lock_mode = {mode!r}")
        if not mode and v:
            raise ValueError('needs object_lock_mode = "GOVERNANCE" or "COMPLIANCE"')
        return v

    @field_validator("key_template")
    @classmethod
    def _key_template(cls, v: str) -> str:
        from rollcap.keys import validate_template  # local import: keys imports schema

        validate_template(v)
        return v

    @property
    def is_s3(self) -> bool:
        return self.destination.startswith("s3://")

    @property
    def bucket(self) -> str:
        return urlsplit(self.destination).netloc

    @property
    def prefix(self) -> str:
        """s3: the key prefix; file: the archive's absolute path."""
        u = urlsplit(self.destination)
        return u.path.strip("/") if self.is_s3 else u.path

    @property
    def extension(self) -> str:
        return {"zstd": ".pcap.zst", "gzip": ".pcap.gz", "none": ".pcap"}[self.compression]


class KeepConfig(_Section):
    """Keeps: windows of the ring to upload (`rollcap keep`; offload.mode)."""

    pinned_percent: float = Field(
        30,
        gt=0,
        le=90,
        description="Cap on what pinned files may take, in percent of spool.max_megabytes: "
        "a keep that would pin more (counting the files every keep holds, and the part of "
        "its window still to capture at the current rate) is refused. The rest of the "
        "budget stays a ring.",
    )


class LogConfig(_Section):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level sent to the journal (or stderr outside systemd)."
    )


def parse_listen(v: str) -> tuple[str, int]:
    """("host", port) of a "host:port" listen address; IPv6 as "[::1]:9100"."""
    host, sep, port = v.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f"[{host}] is not an IPv6 address") from None
    elif host != "localhost":
        try:
            if ipaddress.ip_address(host).version != 4:
                raise ValueError
        except ValueError:
            raise ValueError(
                '"host:port" with an IP address, e.g. "127.0.0.1:9817" (loopback), '
                '"[::1]:9817" or "0.0.0.0:9817" (every interface)'
            ) from None
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError('"host:port" with a port from 1 to 65535, e.g. "127.0.0.1:9817"')
    return host, int(port)


# Debian's prometheus-node-exporter reads its textfile collector from here. Root's
# collectors write into it too (e.g. `apt_info.py | sponge .../apt.prom`, which
# writes through a symlink): no rollcap user may write there (docs/metrics.md).
NODE_EXPORTER_DIRECTORY = "/var/lib/prometheus/node-exporter"
METRICS_DIRECTORY = "/var/lib/rollcap-metrics"


class MetricsConfig(_Section):
    """Prometheus metrics: textfiles for node_exporter and optional /metrics endpoints."""

    textfile_directory: str = Field(
        METRICS_DIRECTORY,
        description="rollcap's own textfile directory: each daemon writes its file "
        "atomically into a subdirectory only its user may write, capture/rollcap-capture.prom "
        "and offload/rollcap-offload.prom, every interval_seconds and at exit. At each start "
        f"the units link them (as root) into {NODE_EXPORTER_DIRECTORY}, where Debian's "
        "prometheus-node-exporter reads them; no rollcap user writes there. "
        f"{NODE_EXPORTER_DIRECTORY} itself (0.2.0's default) is read as the "
        'default. "" turns the textfiles off. A missing or unwritable directory is logged '
        "and retried, never fatal.",
    )
    interval_seconds: int = Field(
        15, ge=1, le=3600, description="How often the textfile files are rewritten."
    )
    capture_listen: str = Field(
        "",
        description='"host:port" of an HTTP /metrics endpoint in rollcap-capture, e.g. '
        '"127.0.0.1:9817"; "" (the default) opens no port. Give 0.0.0.0 or an '
        "interface address only to let other hosts scrape it.",
    )
    offload_listen: str = Field(
        "",
        description='"host:port" of an HTTP /metrics endpoint in rollcap-offload, e.g. '
        '"127.0.0.1:9818"; "" (the default) opens no port.',
    )

    @field_validator("textfile_directory")
    @classmethod
    def _textfile_directory(cls, v: str) -> str:
        if not v:
            return v
        p = PurePosixPath(v)
        if not p.is_absolute() or ".." in p.parts or str(p) == "/":
            raise ValueError("an absolute path without '..', or \"\" to turn it off")
        shared = PurePosixPath(NODE_EXPORTER_DIRECTORY)
        if p == shared:
            return METRICS_DIRECTORY  # 0.2's default, still in edited conffiles
        if shared in p.parents or p in shared.parents:
            raise ValueError(
                f"a directory of rollcap's own, not in or above node_exporter's "
                f"{NODE_EXPORTER_DIRECTORY} (root's collectors write there); e.g. "
                f"{METRICS_DIRECTORY}, which the units link into it"
            )
        return str(p)

    @field_validator("capture_listen", "offload_listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if v:
            parse_listen(v)
        return v


class ListenerConfig(_Section):
    """The keep listener in rollcap-offload: Alertmanager's webhook and POST /v1/keep
    file keeps over HTTP, with no shell involved (docs/capture.md, "Keeps from alerts")."""

    enabled: bool = Field(False, description="Run the listener (in rollcap-offload, as rollcap).")
    listen: str = Field(
        "127.0.0.1:9819",
        description='Where it listens: "host:port" (loopback by default; 0.0.0.0 or an '
        "interface address lets other hosts file keeps) or the absolute path of a unix "
        "socket (mode 0660: the offload's user and group, rollcap), in a directory "
        "rollcap-offload may write (docs/capture.md).",
    )
    token_credential: str = Field(
        "listener-token",
        description="Name of the systemd credential holding the bearer token every request "
        "must carry ($CREDENTIALS_DIRECTORY/NAME; the unit loads it from "
        "/etc/credstore/rollcap-listener-token). Without it the listener does not start: "
        "it never answers unauthenticated.",
    )
    lookback_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="An alert's window starts this long before its startsAt. Prometheus "
        "sets startsAt when the alert fires: cover the rule's for: plus one evaluation "
        "interval, plus the lead-up you want to see.",
    )
    max_window_seconds: int = Field(
        1800,
        ge=1,
        le=86400,
        description="An alert's window ends at most this long after its startsAt (a "
        "resolved alert seen first ends at its endsAt). A POST /v1/keep window may be "
        "at most lookback_seconds + max_window_seconds long.",
    )
    reason_labels: list[str] = Field(
        ["instance", "job", "severity"],
        description="Labels written into a kept alert's reason after its alertname "
        "(where the alert has them).",
    )
    windows_per_hour: int = Field(
        30, ge=1, le=100000, description="New keeps filed in any hour at most; more get 429."
    )
    megabytes_per_day: Megabytes = Field(
        20000,
        ge=1,
        description="Once the keeps of the last 24 hours cover this many millions of "
        "bytes, new keeps get 429 (the keep that crosses it is filed).",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if v.startswith("/"):
            p = PurePosixPath(v)
            if ".." in p.parts or len(v.encode()) > 107:
                raise ValueError("a unix socket path: absolute, no '..', at most 107 bytes")
            return str(p)
        parse_listen(v)
        return v

    @field_validator("token_credential")
    @classmethod
    def _credential(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v) or v in (".", ".."):
            raise ValueError("a systemd credential name: letters, digits, '_', '.', '-'")
        return v


class RollcapConfig(_Section):
    """The whole /etc/rollcap.toml."""

    capture: CaptureConfig = Field(default_factory=CaptureConfig)  # type: ignore[arg-type]
    spool: SpoolConfig = Field(default_factory=SpoolConfig)  # type: ignore[arg-type]
    offload: OffloadConfig = Field(default_factory=OffloadConfig)  # type: ignore[arg-type]
    log: LogConfig = Field(default_factory=LogConfig)  # type: ignore[arg-type]
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)  # type: ignore[arg-type]
    listener: ListenerConfig = Field(default_factory=ListenerConfig)  # type: ignore[arg-type]
    keep: KeepConfig = Field(default_factory=KeepConfig)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _cross_checks(self) -> RollcapConfig:
        for name in self.capture.per_interface:
            if name not in self.capture.interfaces:
                raise ValueError(
                    f"capture.per_interface.{name}: no interface {name!r} in capture.interface "
                    f"({', '.join(self.capture.interfaces)})"
                )
        n = len(self.capture.interfaces)
        if self.spool.max_megabytes < (n + 1) * self.capture.rotate_megabytes:
            if n == 1:
                times, being = "twice", "the one being written both fit"
            else:
                times, being = f"{n + 1} times", f"the {n} being written (one per interface) fit"
            raise ValueError(
                f"spool.max_megabytes: must be at least {times} capture.rotate_megabytes "
                f"({(n + 1) * self.capture.rotate_megabytes}) so a finished file and {being}, "
                f"got {self.spool.max_megabytes}"
            )
        if self.offload.mode == "on-demand" and self.spool.on_full != "drop-oldest":
            raise ValueError(
                'offload.mode: "on-demand" keeps the spool as a ring and needs spool.on_full = '
                f'"drop-oldest", got {self.spool.on_full!r}'
            )
        m = self.metrics
        if m.capture_listen and m.capture_listen == m.offload_listen:
            raise ValueError(
                f"metrics.offload_listen: must differ from metrics.capture_listen, "
                f"got {m.offload_listen!r} for both"
            )
        if not self.offload.is_s3:
            archive = PurePosixPath(self.offload.prefix)
            spool = PurePosixPath(self.spool.directory)
            if archive == spool or spool in archive.parents or archive in spool.parents:
                raise ValueError(
                    "offload.destination: the archive must not be inside the spool or contain it"
                )
        return self
