"""The web console (網頁操作介面): server-rendered pages on the gateway's own Twisted site, under ``/console``,
behind the same TLS client-certificate authentication as the API.

One module per job: ``identity`` (who is asking, what they may see, CSRF tokens), ``messages`` (every label in
zh-TW and English), ``html`` (escaping layout helpers on markupsafe), ``reads`` (the paged, indexed SQL reads
the API has no route for), ``dead_letters`` (the bank's dead-letter queue on RabbitMQ: inspect and replay),
``voucher_form`` (憑單編製: form fields to a schema-valid unsigned voucher), ``view`` (what a page handler
gets and returns), ``agency_pages`` and ``treasury_pages`` (the pages), ``routes`` (the klein app: viewer,
language, CSRF, rate limit, thread pool) and ``wiring`` (built from ``vgw serve``'s settings).
"""
