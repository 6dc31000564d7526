"""The switchboard: what happens when the bot hands a call to a person.

    flow ``transfer`` step -> ``waiting.wait_for_agent`` (per call, on the worker holding the line)
      -> ``queue.CallQueue`` (Redis: waiting calls of every worker, positions)
      -> ``presence.Presence`` (Redis: agents' states; longest-idle agent of the service)
      -> offer on the agents' console (``web/console.py``, live over SSE from Redis pub/sub)
      -> accept: ``CallControl.connect_agent`` (SIP: bot bridges the legs; Twilio: ``<Dial>``)
      -> decline / no answer: next agent; max wait or key 1: ``callbacks.Callbacks``

Everything another worker or the console must see lives in Redis (``callbot:sb:*``);
decisions (priorities, announcements, wait estimates, open or closed) are pure functions
in ``policy.py``. Every step is a call event (``callbot/events.py``).
"""
