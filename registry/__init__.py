"""The registry: the master data every other domain reads — places (districts, streets,
communities), elders (contacts, subsidy categories, long-term-care coverage, GB/T 42195 assessments),
guardians, providers and caregivers (certificates), and who may see which of them (``scope.py``).

``models.py`` (tables), ``schemas/`` (wire types), ``service/`` (use cases, one module per resource),
``routes/`` (controllers, one module per resource), ``scope.py`` (the scoping rules and their SQL),
``assessment.py`` (the pure GB/T 42195 rules), ``idcard.py`` (GB 11643 resident ID numbers).
"""
