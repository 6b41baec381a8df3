"""Use cases: what the API (and the CLI) may ask for. The only layer servicers call.

The services the servicers call — `TenantService` (tenants.py, keys.py), `WorkflowService`,
`SourceService`, `ExecutionService` — each take a `Principal` (tenant and role) and check the
role (access.py); their work reads and writes that tenant's rows through `storage/`, in one
transaction per step. `ExecutionService` (executions.py) is a front over parts with one job
each (its docstring lists them): preparing a run, running a queued job, a run's heartbeat,
following and cancelling runs on other replicas, admission, the run records; `WorkerPool`
(workers.py) claims this replica's share of the job queue. Redis is reached only through
`queue/`, `limits/` and `caching/`, which turn its failures into what each call means.
"""
