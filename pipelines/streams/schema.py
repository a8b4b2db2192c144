"""Names and allowed values of the lead event streams, without importing Faust (the simulator and the CLI use it).

The typed records themselves are in pipelines/streams/records.py.
"""

TOPIC_WEB = "lead.web"          # site / app activity
TOPIC_EMAIL = "lead.email"      # emails sent, opened, clicked
TOPIC_MESSAGES = "lead.messages"  # WhatsApp and SMS, with their text
TOPIC_CALLS = "lead.calls"      # phone calls, with notes
TOPIC_CRM = "lead.crm"          # CRM status changes, conversion included
TOPIC_DEADLETTER = "lead.deadletter"
SOURCE_TOPICS = (TOPIC_WEB, TOPIC_EMAIL, TOPIC_MESSAGES, TOPIC_CALLS, TOPIC_CRM)

WEB_ACTIONS = ("listing_view", "search", "saved_listing", "emi_calculator", "session", "form_submission")
EMAIL_ACTIONS = ("sent", "opened", "clicked")
MESSAGE_CHANNELS = ("whatsapp", "sms")
DIRECTIONS = ("inbound", "outbound")  # inbound: from the lead
CRM_STATUSES = ("new", "contacted", "qualified", "site_visit", "negotiation", "converted", "lost")
