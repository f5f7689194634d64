"""Automations: customer events start runs of automations; runs wait in the database and send
through the outbox and the compliance gate like every other message. See docs/automations.md.

::

    spec.py         what an automation and an event may say (pydantic models, bounds)
    events.py       POST /api/v1/events: store events once, find or create contacts, start runs
    definitions.py  automations and their versions: create, edit, pause, archive
    conditions.py   the segment language and event-data comparisons, checked as a run starts
    schedule.py     when a wait ends (zoneinfo, DST-correct wall-clock times)
    runs.py         run states, history, cancelling (by subject, contact, automation)
    triggers.py     keyword and no-reply triggers, started with their inbound/outbound message
    timers.py       workers claim due runs and do their steps, effects in the claim's transaction
    drafts.py       queue_for_person: drafts a person sends with one action

(Not to be confused with ``services/events.py``, the inbox's live event bus.)
"""
