"""nova's compute RPC over AMQP: the wire format (`wire`), the transport URL (`transport`),
the sending side (`client`) and the receiving side (`server`). A part, like the database: it
imports only the foundation floor."""
