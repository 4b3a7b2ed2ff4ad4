"""Payment vouchers (付款憑單): the model, its XML mapping, identifiers, business rules, the FISC bank directory,
and the whole check of a signed voucher. Built on gateway.xmlsec and gateway.trust."""
