"""Background jobs of contacts (imports, reverts, exports): one lease/sweep/checkpoint
mechanism (``runner``), its SQL (``repository``), the caller a job acts as
(``principal``) and formula-safe CSV output (``csv_output``). Each kind of job brings
only its steps (``crm_contacts.imports.jobs``, ``crm_contacts.exports.jobs``); the
worker composes them in ``crm_contacts.background``."""
