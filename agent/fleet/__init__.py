"""A fleet of simulated compute agents in one process, against one shared database.

Every simulated agent runs the single agent's own code (service registration, `Heartbeat.beat`,
`ComputeHost` with the compute manager and the resource tracker) on a fakevirt hypervisor; what
the fleet shares is the machinery: one engine and pool, one beat scheduler thread with a small
worker pool, one job scheduler for the periodic audits (see runner.py).
"""
