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

Model answers on stored cases (``GET /cases/{id}/risk`` and ``/similar``) need
``cases.deidentified``, not ``assistants.use``: researchers may call them. Decided so because
(1) the survival model and patient embedding behind them are fitted on, and read, the store's
de-identified frame only (ages capped at 90, no names, MRNs or dates), so an answer holds nothing
the researcher cannot already read in the de-identified case view, cohort and factors; (2) a
researcher reaches a case by its case id only (an MRN or source id is a 404), and the answer
names other cases by case id only; (3) these are evaluations of a model on research data, the
work ``models.train`` exists for, not advice about a patient in care, which is what
``assistants.use`` guards (predictions on patient data a clinician sends in); (4) each call is
in the audit log with the researcher's name and role. tests/service/test_authz_matrix.py holds
the decision (``test_researchers_get_model_answers_on_deidentified_cases_by_case_id_only``).
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
