"""nova's compute REST API (/v2.1) for this agent's database: `agent api`.

Layers, each importing only downward: `microversion` and `faults` (pure rules), the resource
modules (`services`, ...: one per resource, each a table of routes whose handlers take the
request context and return a body), `app` (the WSGI application: routing, the optional
project segment, negotiation, request ids, errors), `server` (the process: options, the bind
rule, the WSGI server).
"""
