"""Case store: imports, patients (PHI encrypted, identifiers as keyed hashes) and their
encounters, conditions, medications, observations, adverse events, outcomes and notes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHILDREN = ("encounters", "conditions", "medications", "observations", "adverse_events", "outcomes", "notes")


def _child(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f(f"fk_{name}_patient_id_patients"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
    )
    op.create_index(op.f(f"ix_{name}_patient_id"), name, ["patient_id"])


def _days(*names: str) -> list[sa.Column]:
    return [sa.Column(n, sa.Float(), nullable=True) for n in names]


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=True),
        sa.Column("n_cases", sa.Integer(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
        sa.UniqueConstraint("file_sha256", name=op.f("uq_imports_file_sha256")),
    )
    op.create_index(op.f("ix_imports_dataset"), "imports", ["dataset"])
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(length=24), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=64), nullable=False),
        sa.Column("source_key_hash", sa.String(length=64), nullable=False),
        sa.Column("source_id_hash", sa.String(length=64), nullable=False),
        sa.Column("mrn_hash", sa.String(length=64), nullable=True),
        sa.Column("source_id_enc", sa.Text(), nullable=False),
        sa.Column("mrn_enc", sa.Text(), nullable=True),
        sa.Column("name_enc", sa.Text(), nullable=True),
        sa.Column("birth_date_enc", sa.Text(), nullable=True),
        sa.Column("index_date_enc", sa.Text(), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=False),
        sa.Column("age_years", sa.Float(), nullable=True),
        sa.Column("death_day", sa.Float(), nullable=True),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["import_id"], ["imports.id"], name=op.f("fk_patients_import_id_imports")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("case_id", name=op.f("uq_patients_case_id")),
        sa.UniqueConstraint("source_key_hash", name=op.f("uq_patients_source_key_hash")),
    )
    for column in ("dataset", "import_id", "mrn_hash", "source_id_hash"):
        op.create_index(op.f(f"ix_patients_{column}"), "patients", [column])
    _child(
        "adverse_events",
        sa.Column("term", sa.Text(), nullable=False),
        sa.Column("decoded", sa.Text(), nullable=True),
        sa.Column("body_system", sa.Text(), nullable=True),
        sa.Column("severity", sa.String(length=32), nullable=True),
        sa.Column("serious", sa.Boolean(), nullable=True),
        sa.Column("related", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        *_days("start_day", "end_day"),
    )
    _child(
        "conditions",
        sa.Column("code", sa.String(length=16), nullable=True),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        *_days("onset_day"),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
    )
    op.create_index(op.f("ix_conditions_code"), "conditions", ["code"])
    _child(
        "encounters",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        *_days("start_day", "end_day"),
    )
    _child(
        "medications",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("system", sa.String(length=128), nullable=True),
        sa.Column("dose", sa.Float(), nullable=True),
        sa.Column("dose_unit", sa.String(length=32), nullable=True),
        sa.Column("route", sa.String(length=64), nullable=True),
        *_days("start_day", "end_day"),
        sa.Column("kind", sa.String(length=16), nullable=False),
    )
    _child(
        "notes",
        sa.Column("kind", sa.String(length=32), nullable=False),
        *_days("day"),
        sa.Column("text_enc", sa.Text(), nullable=False),
        sa.Column("n_redacted", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    _child(
        "observations",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("system", sa.String(length=128), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=True),
        *_days("day"),
    )
    _child(
        "outcomes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("time_days", sa.Float(), nullable=False),
        sa.Column("event", sa.Integer(), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    for table in (*CHILDREN, "patients", "imports"):
        op.drop_table(table)
