"""Telephony edges: the only code that knows each provider's wire format.

Each provider gives the call pipeline (``callbot.call.run_call``) a pipecat
transport pair (audio in at 16 kHz, audio out at 8 kHz, ``InputDTMFFrame`` for
keypad digits) plus a ``CallControl`` for hang-up and transfer.
"""
