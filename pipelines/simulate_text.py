"""Text for the broker-lead simulator: cities, localities, and WhatsApp/SMS and call-note templates.

Templates are English and Hinglish (Hindi in Latin script, as leads actually type it) with slots for `{bhk}`,
`{locality}`, `{city}`, `{budget}` (in lakh or crore), `{cover}` and `{premium}`. Inbound texts come in three tones
that carry the lead's hidden intent: `high` (site visits, EMI, documents, booking amount), `mid` (neutral), `low`
(not now, too expensive, stop). No template holds a person's name: events carry no PII beyond the lead id.
"""

from __future__ import annotations

# city -> (tier, localities)
CITIES: dict[str, tuple[int, tuple[str, ...]]] = {
    "Mumbai": (1, ("Andheri West", "Powai", "Thane West", "Borivali", "Chembur", "Kharghar", "Goregaon East")),
    "Delhi": (1, ("Dwarka", "Rohini", "Saket", "Vasant Kunj", "Mayur Vihar", "Janakpuri")),
    "Bengaluru": (1, ("Whitefield", "Sarjapur Road", "HSR Layout", "Electronic City", "Hebbal", "Yelahanka")),
    "Hyderabad": (1, ("Gachibowli", "Kondapur", "Kokapet", "Miyapur", "Kukatpally", "Tellapur")),
    "Chennai": (1, ("OMR", "Velachery", "Porur", "Tambaram", "Anna Nagar", "Perumbakkam")),
    "Pune": (1, ("Baner", "Hinjewadi", "Wakad", "Kharadi", "Hadapsar", "Wagholi")),
    "Kolkata": (1, ("New Town", "Rajarhat", "Salt Lake", "Behala", "EM Bypass", "Garia")),
    "Ahmedabad": (1, ("SG Highway", "Bopal", "Satellite", "Gota", "Shela", "Chandkheda")),
    "Jaipur": (2, ("Mansarovar", "Vaishali Nagar", "Jagatpura", "Ajmer Road", "Malviya Nagar")),
    "Lucknow": (2, ("Gomti Nagar", "Sushant Golf City", "Aliganj", "Indira Nagar", "Raebareli Road")),
    "Indore": (2, ("Vijay Nagar", "Nipania", "Super Corridor", "Rau", "Bicholi Mardana")),
    "Kochi": (2, ("Kakkanad", "Edappally", "Vyttila", "Aluva", "Kalamassery")),
    "Chandigarh": (2, ("Zirakpur", "Mohali Sector 70", "Kharar", "Panchkula", "New Chandigarh")),
    "Nagpur": (2, ("Wardha Road", "Manish Nagar", "Hingna", "Besa", "Dharampeth")),
    "Coimbatore": (2, ("Saravanampatti", "Peelamedu", "Vadavalli", "Singanallur", "Kalapatti")),
    "Surat": (2, ("Vesu", "Pal", "Adajan", "Althan", "Dumas Road")),
    "Mysuru": (3, ("Vijayanagar", "Hebbal", "Bogadi", "JP Nagar")),
    "Nashik": (3, ("Gangapur Road", "Indira Nagar", "Pathardi Phata", "Nashik Road")),
    "Rajkot": (3, ("Kalawad Road", "Mavdi", "University Road", "Raiya Road")),
    "Dehradun": (3, ("Rajpur Road", "Sahastradhara Road", "Clement Town", "Prem Nagar")),
}
# share of leads by city (tier 1 about 60 %, tier 2 about 30 %, tier 3 about 10 %)
CITY_WEIGHTS: dict[str, float] = {
    "Mumbai": 11, "Delhi": 9, "Bengaluru": 11, "Hyderabad": 8, "Chennai": 6, "Pune": 8, "Kolkata": 4, "Ahmedabad": 3,
    "Jaipur": 5, "Lucknow": 4, "Indore": 4, "Kochi": 3, "Chandigarh": 4, "Nagpur": 3, "Coimbatore": 3, "Surat": 4,
    "Mysuru": 3, "Nashik": 3, "Rajkot": 2, "Dehradun": 2,
}

PROFESSIONS: dict[str, tuple[tuple[str, float, float], ...]] = {  # employment -> (profession, weight, log-income shift)
    "salaried": (("software_engineer", 3, 0.45), ("bank_officer", 1.5, 0.1), ("teacher", 1.5, -0.35),
                 ("government_employee", 1.5, 0.0), ("sales_manager", 1.5, 0.1), ("nurse", 0.8, -0.4),
                 ("accountant", 1.2, -0.15), ("marketing_executive", 1.0, -0.05), ("doctor", 0.5, 0.6),
                 ("civil_engineer", 0.8, 0.0), ("bpo_associate", 1.0, -0.6)),
    "self_employed": (("doctor", 1.0, 0.7), ("chartered_accountant", 1.0, 0.5), ("lawyer", 0.8, 0.3),
                      ("consultant", 1.2, 0.25), ("architect", 0.6, 0.2), ("freelance_designer", 0.8, -0.2),
                      ("insurance_agent", 0.8, -0.3)),
    "business": (("trader", 1.5, 0.2), ("shop_owner", 1.5, -0.1), ("manufacturer", 0.7, 0.6),
                 ("restaurant_owner", 0.6, 0.1), ("transport_business", 0.6, 0.1), ("real_estate_agent", 0.4, 0.2)),
    "retired": (("retired", 1.0, -0.35),),
    "student": (("student", 1.0, -1.6),),
    "other": (("homemaker", 1.5, -0.9), ("farmer", 1.0, -0.6), ("gig_worker", 1.0, -0.8)),
}

BHK = ("1BHK", "2BHK", "2BHK", "2BHK", "3BHK", "3BHK", "4BHK")
WEEKDAYS = ("Saturday", "Sunday", "Sunday", "this weekend", "tomorrow", "Friday evening")
HINGLISH_WORDS = ("kitna", "hai", "nahi", "hoon", "kya", "chahiye", "karke", "mein", "bhejo", "abhi", "kab")


def inr_amount(lakh: float) -> str:
    """72.5 -> '72 lakh'; 135 -> '1.35 crore' (how Indian buyers say amounts)."""
    if lakh >= 100:
        return f"{lakh / 100:.2f}".rstrip("0").rstrip(".") + " crore"
    return f"{lakh:.0f} lakh"


# --- WhatsApp / SMS, from the broker (outbound) ---
OUTBOUND = {
    "property": (
        "Hi, thanks for your enquiry on the {bhk} in {locality}, {city}. When is a good time to talk?",
        "Namaste ji, {locality} mein naye {bhk} options aaye hain, {budget} ke andar. Details bhejun?",
        "New launch in {locality}: {bhk} from {budget}, possession Dec 2026. Site visit this weekend?",
        "Your home loan eligibility check is ready. Please share last 3 salary slips or ITR to proceed.",
        "Reminder: site visit for the {bhk} in {locality} {day} at 11 am. Reply YES to confirm.",
        "Following up on the {locality} property. Koi sawal ho toh batayein.",
        "Home loan rates now from 8.4% p.a. EMI for {budget} starts low. Want a quick eligibility check?",
        "Price drop alert: {bhk} in {locality} now at {budget}. Limited units left.",
    ),
    "insurance": (
        "Hi, thanks for your interest in term insurance. A {cover} cover starts at Rs {premium}/month. Call?",
        "Namaste ji, aapke family ke liye {cover} ka health cover, premium sirf Rs {premium}/month. Details bhejun?",
        "Reminder: your quote for {cover} term cover is valid till Friday. Reply YES to proceed.",
        "Following up on your insurance enquiry. Koi sawal ho toh batayein.",
        "Tax saving under 80C and 80D: plans from Rs {premium}/month. Want a comparison?",
    ),
}
# --- from the lead (inbound), by tone ---
INBOUND = {
    ("property", "high"): (
        "Is the {bhk} in {locality} still available?",
        "EMI kitna aayega {budget} pe?",
        "Please share site visit timings",
        "Can we do the site visit on {day}?",
        "What is the booking amount for the {bhk}?",
        "Which documents are needed for the home loan?",
        "Loan approval kitne din mein hoga?",
        "{day} ko site visit kar sakte hain? Family ke saath aayenge",
        "Price negotiable hai kya? Final kitna hoga {bhk} ka?",
        "Please send the brochure and floor plan for {locality}",
        "Salary slips and PAN ready hai, aage kya karna hai?",
        "Token amount kitna dena hoga?",
        "Is it ready to move? Parking included with the {bhk}?",
        "We liked the flat. Can you hold the unit till {day}?",
    ),
    ("property", "mid"): (
        "Ok, will check and revert",
        "Send details on WhatsApp",
        "Thoda time chahiye, family se baat karke batata hoon",
        "What is the possession date?",
        "Any options closer to the metro in {city}?",
        "Call me after 6 pm",
        "Maintenance kitna hai monthly?",
        "Is this RERA registered?",
    ),
    ("property", "low"): (
        "abhi interested nahi hoon",
        "Not now, maybe next year",
        "Too expensive for me",
        "Budget itna nahi hai, {budget} bahut zyada hai",
        "Please stop messaging",
        "STOP",
        "Already bought elsewhere, thanks",
        "Wrong number",
        "Bahut mehenga hai",
        "Not looking right now",
    ),
    ("insurance", "high"): (
        "Premium kitna hoga {cover} cover ke liye?",
        "Please share the policy documents and claim settlement ratio",
        "Which documents do I need to buy the plan?",
        "Can I pay the premium yearly? Want to start this week",
        "Medical test kab karwana hai?",
        "Please send the payment link",
    ),
    ("insurance", "mid"): (
        "Ok, will compare and revert",
        "Send details on WhatsApp",
        "Thoda time chahiye, soch ke batata hoon",
        "Does it cover my parents too?",
        "Call me after 6 pm",
    ),
    ("insurance", "low"): (
        "abhi interested nahi hoon",
        "Not now, already have a policy",
        "Too expensive for me",
        "Please stop messaging",
        "STOP",
        "Wrong number",
    ),
}

# --- call notes written by the broker, by tone; `unreached` for calls that did not connect ---
CALL_NOTES = {
    ("property", "high"): (
        "Interested in {bhk}, wants site visit {day}",
        "Asked about EMI for {budget} loan, sending eligibility",
        "Site visit done, liked the {bhk} in {locality}",
        "Discussed booking amount, will visit with family {day}",
        "Docs collected for home loan login",
        "Negotiating on price, close to {budget}",
    ),
    ("property", "mid"): (
        "Call back requested after 6 pm",
        "Comparing with other projects in {locality}",
        "Wants options near {locality}, budget {budget}",
        "Spouse to decide, follow up next week",
    ),
    ("property", "low"): (
        "Budget mismatch",
        "Not interested right now",
        "Looking only for rentals",
        "Asked not to call again",
        "Bought elsewhere",
    ),
    ("insurance", "high"): (
        "Wants {cover} term cover, medical test to be scheduled",
        "Ready to buy, sending payment link",
        "Asked for family floater quote, follow up {day}",
    ),
    ("insurance", "mid"): (
        "Call back requested after 6 pm",
        "Comparing quotes from two insurers",
    ),
    ("insurance", "low"): (
        "Not interested right now",
        "Already covered by employer",
        "Asked not to call again",
    ),
}
UNREACHED_NOTES = ("Not reachable", "Switched off", "No answer", "Busy, call back later")

CAMPAIGNS = {
    "property": ("weekly_listings", "new_launch", "home_loan_rates", "festive_offer", "site_visit_weekend"),
    "insurance": ("term_plan_quote", "tax_saver_80c", "health_cover", "festive_offer"),
}
