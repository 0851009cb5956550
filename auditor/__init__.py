"""The auditor. Its sub-packages are layers, each importing only those below it:
``cli`` > ``watch`` > ``audit`` > ``report`` > ``evidence`` > (``policies`` > ``topology`` |
``probes``) > ``domain``. docs/architecture.md describes them; `make lint` enforces them."""
