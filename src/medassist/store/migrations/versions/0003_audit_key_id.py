"""Audit log keyed with HMAC: ``audit_log.key_id`` names the audit key that signed an entry.

Entries written before this revision keep ``key_id`` NULL: their ``entry_hash`` is the plain
SHA-256 it always was. ``medassist audit verify`` checks them as *legacy, unkeyed* entries and
says so; the first keyed entry's MAC covers their head, so once one follows them they cannot
be rewritten undetected either. No row is changed (the table is append-only).

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN is no UPDATE: the append-only triggers do not fire and every stored row stays as hashed.
    op.add_column("audit_log", sa.Column("key_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    # Keyed entries cannot be verified without their key id; refuse rather than lose it.
    n = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_log WHERE key_id IS NOT NULL")).scalar()
    if n:
        raise RuntimeError(f"audit_log holds {n} HMAC-keyed entries; downgrading below 0003 would make them unverifiable.")
    op.drop_column("audit_log", "key_id")
