"""The control plane: operator requests on services and hosts, shared by the command line and
(later) the /v2.1 API. Each function takes the caller's session (one transaction per request),
applies nova's rules, and raises a typed error (agent.control.errors) when it refuses; the
caller decides the words and the exit status or HTTP code.
"""
