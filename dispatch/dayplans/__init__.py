"""Day plans: the next day's scheduled orders (state ``created``, not as-soon-as-possible or urgent, of
a service the provider holds a contract for on that day) are planned per provider with
:mod:`dispatch.routing`: which caregiver serves which order, in what sequence and from when. Providers
are taken in id order and each plans the orders of the districts it serves that no other plan of the
day holds. Plans are stored in ``day_plan`` / ``day_plan_stop``.

A plan is an assignment. Publishing it moves each planned order ``created → accepted`` (actor system,
note "day plan") through :func:`dispatch.common.change_state` and creates its visit at the planned
start, so the caregiver sees it in the app while real-time dispatch and the operator queue, which take
only ``created`` and ``escalated`` orders, leave it alone; an order whose state changed meanwhile is
left out (unassigned). A re-plan after sick calls and cancellations changes as little as possible:
visits under way (or booked outside the plan) are fixed points, a visit that keeps its caregiver keeps
its place and start, a sick caregiver's visits not yet started are reassigned in place, and one that
fits nowhere is withdrawn to the operator queue (``accepted → escalated``).

The package is split along those steps; each module imports only the ones below it (an import-linter
contract in ``pyproject.toml``):

* :mod:`.plan` builds: the nightly job, the dirty-plan job, a dispatcher's build on demand and the
  evening escalation of what no plan could place;
* :mod:`.replan` repairs a stored plan with minimal change (a build also inserts new orders this way);
* :mod:`.publish` turns stops into assignments and stores them;
* :mod:`.instance` reads a provider's day from the database as a :mod:`dispatch.routing` instance;
* :mod:`.common` holds who may read or change a plan and the plan as the API shows it.
"""
