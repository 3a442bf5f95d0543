"""MSSanté: each Communication of a letter to a recipient with an MSSanté mailbox is also sent
as secure mail, through the durable outbox, and its status follows the message.

- `plan.py` (conversion, before the 202): which Communications go by mail, marked
  `in-progress`, and the message of each (subject and body in French);
- `xdm.py`, `rendering.py`, `compose.py`: the IHE XDM package of the letter, a page to read
  it, and the MIME message;
- `smtp.py`: sending through the operator's relay (STARTTLS, optional client certificate),
  and what an SMTP answer means (accepted, try again, refused for good);
- `status.py`: the Communication's new status as a transaction bundle for the shared record
  (a conditional update whose references are conditional too, so any FHIR server takes it);
- `delivery.py`: the outbox handler.
"""
