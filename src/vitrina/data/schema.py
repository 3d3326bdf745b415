"""The four record kinds every shop brings, as frame columns and as database tables.

Loaders and the importer produce pandas frames with exactly these columns; storage maps them to
the tables below; snapshots read them back. One definition keeps the three in step.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

INTERACTION_TYPES: tuple[str, ...] = ("view", "click", "cart", "purchase", "rating")
SPLIT_LABELS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class Field:
    """One column: its kind drives parsing and validation in the importer."""

    name: str
    kind: str  # "str" | "float" | "json_list" | "json_dict" | "enum"
    required: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""


ITEM_FIELDS: tuple[Field, ...] = (
    Field("item_id", "str", True, doc="the shop's own product id"),
    Field("title", "str"),
    Field("description", "str"),
    Field("category_path", "str", doc="levels joined by ' > ', broadest first"),
    Field("brand", "str"),
    Field("price", "float", doc="non-negative, shop currency"),
    Field("image_paths", "json_list", doc="photo paths relative to the dataset folder"),
    Field("audio_path", "str"),
    Field("attributes", "json_dict", doc="any further key/value pairs"),
)
USER_FIELDS: tuple[Field, ...] = (
    Field("user_id", "str", True),
    Field("attributes", "json_dict"),
)
INTERACTION_FIELDS: tuple[Field, ...] = (
    Field("event_id", "str", doc="idempotency key; derived from the row when absent"),
    Field("user_id", "str", True),
    Field("item_id", "str", True),
    Field("type", "enum", True, INTERACTION_TYPES),
    Field("value", "float", doc="rating value or event weight; 1.0 when absent"),
    Field("ts", "float", doc="unix seconds; absent when the source has only an order"),
    Field("split", "enum", False, SPLIT_LABELS, doc="a benchmark's official fold"),
)
REVIEW_FIELDS: tuple[Field, ...] = (
    Field("review_id", "str", doc="derived from the row when absent"),
    Field("user_id", "str"),
    Field("item_id", "str"),
    Field("rating", "float"),
    Field("text", "str", True),
    Field("ts", "float"),
    Field("label", "float", doc="a dataset's sentiment label (1 positive, 0 negative) when known"),
)

FIELDS: dict[str, tuple[Field, ...]] = {
    "items": ITEM_FIELDS,
    "users": USER_FIELDS,
    "interactions": INTERACTION_FIELDS,
    "reviews": REVIEW_FIELDS,
}
KEYS: dict[str, str] = {
    "items": "item_id",
    "users": "user_id",
    "interactions": "event_id",
    "reviews": "review_id",
}


def columns(kind: str) -> list[str]:
    """Column names of a record kind, in schema order."""
    return [f.name for f in FIELDS[kind]]


metadata = sa.MetaData()

items_table = sa.Table(
    "items",
    metadata,
    sa.Column("item_id", sa.String(128), primary_key=True),
    sa.Column("title", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("category_path", sa.Text),
    sa.Column("brand", sa.Text),
    sa.Column("price", sa.Float),
    sa.Column("image_paths", sa.JSON),
    sa.Column("audio_path", sa.Text),
    sa.Column("attributes", sa.JSON),
)
users_table = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("attributes", sa.JSON),
)
interactions_table = sa.Table(
    "interactions",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    # Import order: the tie-breaker for sources that give an order but no timestamps.
    sa.Column("pos", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.String(128), sa.ForeignKey("users.user_id"), nullable=False),
    sa.Column("item_id", sa.String(128), sa.ForeignKey("items.item_id"), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("ts", sa.Float),
    sa.Column("split", sa.String(8)),
    sa.Index("ix_interactions_user", "user_id"),
    sa.Index("ix_interactions_item", "item_id"),
    sa.Index("ix_interactions_pos", "pos"),
)
reviews_table = sa.Table(
    "reviews",
    metadata,
    sa.Column("review_id", sa.String(64), primary_key=True),
    sa.Column("pos", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.String(128)),
    sa.Column("item_id", sa.String(128)),
    sa.Column("rating", sa.Float),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("ts", sa.Float),
    sa.Column("label", sa.Float),
    sa.Index("ix_reviews_item", "item_id"),
)
# Sponsored-result events (vitrina.ads): every impression and click, with the price and the pCTR
# that the auction used; the next pCTR model trains on these rows.
ad_events_table = sa.Table(
    "ad_events",
    metadata,
    sa.Column("event_id", sa.String(80), primary_key=True),  # "<impression id>:<kind>"
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("impression_id", sa.String(64), nullable=False),
    sa.Column("campaign_id", sa.String(128), nullable=False),
    sa.Column("item_id", sa.String(128), nullable=False),
    sa.Column("user_id", sa.String(128)),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("slot", sa.Integer, nullable=False),
    sa.Column("pctr", sa.Float, nullable=False),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("how", sa.String(16), nullable=False),
    sa.Column("query", sa.Text),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_ad_events_campaign", "campaign_id"),
    sa.Index("ix_ad_events_day", "day"),
    sa.Index("ix_ad_events_user_day", "user_id", "day"),
)
# Advertisers' campaigns as the service runs them (vitrina.ads.Campaign.from_dict specs).
campaigns_table = sa.Table(
    "campaigns",
    metadata,
    sa.Column("campaign_id", sa.String(128), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
)

# Catalogue change feed (vitrina.serving): every item written or deleted through the service, with
# the item's modality vectors, in commit order. Each serving worker applies the rows past the last
# `seq` it has seen, so an item posted to one worker is searchable and recommendable on all.
item_changes_table = sa.Table(
    "item_changes",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.String(128), nullable=False),
    sa.Column("op", sa.String(8), nullable=False),  # "upsert" | "delete"
    sa.Column("vectors", sa.LargeBinary),  # npz: modality -> vector, for upserts
    sa.Column("ts", sa.Float, nullable=False),
)

# API keys (vitrina.privacy.keys): only an argon2 hash of each secret is kept, with the key's role.
api_keys_table = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),  # public part of the key, shown in lists and logs
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("hash", sa.String(256), nullable=False),
    sa.Column("rate_per_min", sa.Integer),  # None: [serve] rate_per_min
    sa.Column("created_ts", sa.Float, nullable=False),
    sa.Column("revoked_ts", sa.Float),
)

# Audit log (vitrina.privacy.audit): every admin action and every read of personal data. Append-only:
# the database refuses UPDATE and DELETE on it (triggers created with the schema).
audit_log_table = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("key_id", sa.String(16)),  # None: the service runs without keys, or a CLI action
    sa.Column("role", sa.String(16)),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),  # e.g. "GET /users/u1" or "keys revoke k1"
    sa.Column("subject", sa.String(128)),  # the user whose data was read or changed, when one is
    sa.Column("status", sa.Integer),
    sa.Index("ix_audit_log_ts", "ts"),
    sa.Index("ix_audit_log_subject", "subject"),
)
_APPEND_ONLY = {
    "sqlite": [
        f"CREATE TRIGGER audit_log_no_{op.lower()} BEFORE {op} ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        for op in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION vitrina_audit_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION vitrina_audit_append_only()",
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION vitrina_audit_append_only()",
    ],
}
for _dialect, _statements in _APPEND_ONLY.items():
    for _statement in _statements:
        sa.event.listen(audit_log_table, "after_create", sa.DDL(_statement).execute_if(dialect=_dialect))

# Differential privacy (vitrina.privacy.dp): what each noisy release cost, per dataset; the accountant
# sums it against the budget.
privacy_spend_table = sa.Table(
    "privacy_spend",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset", sa.String(128), nullable=False),
    sa.Column("query", sa.String(256), nullable=False),
    sa.Column("epsilon", sa.Float, nullable=False),
    sa.Column("delta", sa.Float, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_privacy_spend_dataset", "dataset"),
)

# What a release published (noisy values, JSON {key: value}) and how: showing it again is
# post-processing and costs no budget, so the dashboard reads releases from here, never raw counts.
privacy_releases_table = sa.Table(
    "privacy_releases",
    metadata,
    sa.Column("seq", sa.Integer, sa.ForeignKey("privacy_spend.seq"), primary_key=True),
    sa.Column("mechanism", sa.String(16), nullable=False),
    sa.Column("sensitivity", sa.Float, nullable=False),
    sa.Column("noise_scale", sa.Float, nullable=False),
    sa.Column("released", sa.Text, nullable=False),
)

# The batch job's top-K per shopper (`vitrina serve precompute`): the ranked item ids and scores
# (JSON) computed on one version at one catalogue feed position from one history (its digest); a
# request uses the list only while all three still hold.
precomputed_table = sa.Table(
    "precomputed_recommendations",
    metadata,
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("feed_seq", sa.BigInteger, nullable=False),
    sa.Column("history_key", sa.String(32), nullable=False),
    sa.Column("basis", sa.String(16), nullable=False),
    sa.Column("ranked", sa.Text, nullable=False),
)

TABLES: dict[str, sa.Table] = {
    "items": items_table,
    "users": users_table,
    "interactions": interactions_table,
    "reviews": reviews_table,
}
