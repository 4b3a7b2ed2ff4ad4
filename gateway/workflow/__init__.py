"""The five signed stages: the transition table, signed actions, approvals, queue events, working days. Built on
gateway.vouchers, gateway.xmlsec, gateway.trust and the store port."""
