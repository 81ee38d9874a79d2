"""The 1C adapter: everything that knows 1C's names, URLs, wire quirks and protocols.

Modules: ``literals`` (URL and ``$filter`` building), ``normalize`` (wire quirks fixed at the edge),
``odata`` (the OData client); mapping, translation and SOAP live beside them.

Kept import-free on purpose: importing ``bridge.onec`` must not pull in requests or zeep. Nothing
here may import ``bridge.store``, ``bridge.site``, ``bridge.notify`` or ``bridge.service``.
"""
