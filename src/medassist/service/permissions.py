"""Who may do what: the one permission table of the service.

Every route declares one permission (or that it is public) through ``auth.Require`` /
``auth.Public``; a role may use a route when the permission is in its row below. Nothing else
in the service decides access.

    permission           admin  clinician  researcher  auditor
    account               yes     yes        yes        yes    own password, own API tokens, API docs
    models.read           yes     yes        yes        -      model list, cards, reports
    assistants.use        -       yes        -          -      predictions on patient data
    cases.identified      -       yes        -          -      cases with identifiers
    cases.deidentified    -       yes        yes        -      de-identified cases
    models.train          -       -          yes        -      train / evaluate
    audit.read            -       -          -          yes    the audit log
    users.manage          yes     -          -          -      users, roles, lockouts
"""

from __future__ import annotations

from enum import StrEnum

from medassist.store.accounts import Role


class Permission(StrEnum):
    ACCOUNT = "account"
    MODELS_READ = "models.read"
    USE_ASSISTANTS = "assistants.use"
    CASES_IDENTIFIED = "cases.identified"
    CASES_DEIDENTIFIED = "cases.deidentified"
    TRAIN = "models.train"
    AUDIT_READ = "audit.read"
    USERS_MANAGE = "users.manage"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset({P.ACCOUNT, P.MODELS_READ, P.USERS_MANAGE}),
    Role.CLINICIAN: frozenset({P.ACCOUNT, P.MODELS_READ, P.USE_ASSISTANTS, P.CASES_IDENTIFIED, P.CASES_DEIDENTIFIED}),
    Role.RESEARCHER: frozenset({P.ACCOUNT, P.MODELS_READ, P.CASES_DEIDENTIFIED, P.TRAIN}),
    Role.AUDITOR: frozenset({P.ACCOUNT, P.AUDIT_READ}),
}


def allowed(role: Role | str, permission: Permission) -> bool:
    try:
        return permission in ROLE_PERMISSIONS[Role(role)]
    except ValueError:  # a role string the table does not know gets nothing
        return False
