"""The worker's background jobs: import (and revert) and export jobs, run by the one
job runner of ``crm_contacts.jobs.runner`` (leases, sweep, checkpoints)."""

from __future__ import annotations

from crm_contacts.exports.jobs import EXPORT_JOBS
from crm_contacts.imports.jobs import IMPORT_JOBS
from crm_contacts.jobs.runner import JobKind, JobRunner
from crm_contacts.jobs.runner import jobs_subscription as jobs_subscription
from crm_lib.service import ServiceRuntime

#: In drain order: a tenant's imports, then its exports.
JOB_KINDS: tuple[JobKind, ...] = (IMPORT_JOBS, EXPORT_JOBS)


def job_runner(runtime: ServiceRuntime) -> JobRunner:
    """A runner of every kind of contacts job."""
    return JobRunner(runtime, JOB_KINDS)


def runner_of(runtime: ServiceRuntime) -> JobRunner:
    """The worker's one runner (kept on the runtime)."""
    runner = runtime.extras.get("contacts_jobs")
    if runner is None:
        runner = runtime.extras["contacts_jobs"] = job_runner(runtime)
    assert isinstance(runner, JobRunner)
    return runner
