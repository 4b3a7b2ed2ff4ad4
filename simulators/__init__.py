"""Outside parties, simulated: the certificate authorities, agencies and the treasury agent bank.

They talk to the gateway only as the real parties would (files, HTTPS, AMQP), using the core as an SDK.
"""
