"""Import readers: each vendor's export, as its documentation describes it, read into kindling's rows."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from kindling_ops.importing import (
    ContactRow,
    ImportFileError,
    Parsed,
    Rejected,
    SuppressionRow,
    load_mapping,
    read_csv,
    read_hubspot,
    read_mautic,
    read_pinpoint,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
PINPOINT = FIXTURES / "pinpoint"
DUPLICATES = "endpoints sharing an address with a preferred one (ACTIVE first, then the latest EffectiveDate)"


def by_email(parsed: Parsed) -> dict[str | None, ContactRow]:
    return {contact.email: contact for contact in parsed.contacts}


# --- any CSV ---------------------------------------------------------------------------------------


def test_common_headers_are_read_as_kindlings_names() -> None:
    parsed = read_csv(FIXTURES / "contacts.csv")

    ada = by_email(parsed)["ada.lovelace@example.com"]
    assert ada == ContactRow(
        row=2,
        source_ref="contacts.csv:2",
        email="ada.lovelace@example.com",
        user_id=None,
        traits={
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company": "Analytical Engines, Ltd",
            "title": "CTO",
            "industry": "Computer Software",
            "company_size": 1200,
            "phone": "+44 20 7946 0018",
            "country": "GB",
            "timezone": "Europe/London",
            "lead_source": "Webinar",
        },
        stage="mql",
        unsubscribed=False,
    )


def test_values_are_read_as_a_person_wrote_them() -> None:
    contacts = by_email(read_csv(FIXTURES / "contacts.csv"))

    grace, linus, katherine = (
        contacts["grace@fintech.io"],
        contacts["linus@example.org"],
        contacts["katherine@example.net"],
    )
    assert grace.unsubscribed and linus.unsubscribed  # "yes" and "X"
    assert not katherine.unsubscribed  # "no"
    assert grace.traits["timezone"] == "America/New_York"  # the zone's own spelling
    assert grace.stage == "customer"
    assert katherine.stage is None  # "Other" is no kindling stage
    assert linus.traits == {"first_name": "Linus"}  # empty cells are no traits
    assert katherine.row == 7  # the blank line 6 is skipped, not renumbered


def test_a_row_without_email_or_user_id_is_rejected_with_its_row_number() -> None:
    parsed = read_csv(FIXTURES / "contacts.csv")

    assert parsed.rejected == [
        Rejected(3, "contacts.csv:3", "no email and no user id: nothing says who this is")
    ]
    assert len(parsed.contacts) == 4


def test_company_size_is_a_number_when_it_is_one(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        'email,Company Size\na@example.com,51-200\nb@example.com,"1,200"\nc@example.com,250.0\n'
        "d@example.com,about 40\n",
        encoding="utf-8",
    )

    sizes = [contact.traits["company_size"] for contact in read_csv(path).contacts]

    assert sizes == ["51-200", 1200, 250, "about 40"]


def test_an_excel_csv_with_a_bom_semicolons_and_crlf_reads_the_same() -> None:
    parsed = read_csv(FIXTURES / "contacts_excel.csv")

    assert parsed.rejected == []
    marie, soren = parsed.contacts
    assert marie.email == "marie.curie@institut-radium.fr"  # the BOM is not part of the first header
    assert marie.traits == {
        "first_name": "Marie",
        "last_name": "Curie",
        "company": "Institut du Radium; Paris",
        "title": "Directrice",
        "company_size": 45,
        "country": "FR",
        "timezone": "Europe/Paris",
    }
    assert (marie.stage, marie.unsubscribed) == ("sql", False)
    assert soren.traits["first_name"] == "Søren"
    assert soren.traits["company"] == "Københavns Universitet"
    assert (soren.stage, soren.unsubscribed, soren.row) == ("subscriber", True, 3)


def test_a_tab_separated_file_is_recognised() -> None:
    (hedy,) = read_csv(FIXTURES / "contacts_tabs.tsv").contacts

    assert hedy.email == "hedy@lamarr.example"
    assert hedy.traits == {"first_name": "Hedy", "last_name": "Lamarr", "company_size": 12, "country": "AT"}


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ("EMAIL", "email"),
        ("E-mail", "email"),
        ("email_address", "email"),
        ("Email Address", "email"),
        ("firstname", "first_name"),
        ("Given name", "first_name"),
        ("Surname", "last_name"),
        ("lastname", "last_name"),
        ("Company Name", "company"),
        ("Organization", "company"),
        ("jobtitle", "title"),
        ("numberofemployees", "company_size"),
        ("Employees", "company_size"),
        ("Time Zone", "timezone"),
        ("tz", "timezone"),
        ("lifecyclestage", "stage"),
        ("Email Opt Out", "unsubscribed"),
        ("Opted Out", "unsubscribed"),
        ("do_not_email", "unsubscribed"),
        ("Lead Source", "lead_source"),
        ("utmCampaign", "utm_campaign"),
        ("Préférence", "preference"),
    ],
)
def test_header_variants(tmp_path: Path, header: str, target: str) -> None:
    values = {"email": "X@example.com", "company_size": "250", "stage": "salesqualifiedlead"}
    path = tmp_path / "people.csv"
    path.write_text(f"user_id,{header}\nu-1,{values.get(target, 'yes')}\n", encoding="utf-8")

    (contact,) = read_csv(path).contacts

    if target == "email":
        assert contact.email == "x@example.com"
    elif target == "stage":
        assert contact.stage == "sql"
    elif target == "unsubscribed":
        assert contact.unsubscribed is True
    elif target == "company_size":
        assert contact.traits == {"company_size": 250}
    else:
        assert contact.traits == {target: "yes"}


def test_a_mapping_file_overrides_the_automatic_reading() -> None:
    mapping = load_mapping(FIXTURES / "mapping.yaml")
    parsed = read_csv(FIXTURES / "contacts_custom.csv", mapping)

    first, second = parsed.contacts
    assert first.email == "ada@example.com"  # "Work Email", not the personal "Email" column
    assert first.user_id == "cus_1001"
    assert first.traits == {
        "salutation": "Dr",
        "title": "Head of Data",
        "fav_colour": "teal",
        "personal_email": "ada.personal@example.com",
    }
    assert "called twice - pushy" not in first.traits.values()
    assert (second.email, second.user_id, second.row) == (None, "cus_1002", 3)


def test_without_the_mapping_the_same_file_reads_differently() -> None:
    first = read_csv(FIXTURES / "contacts_custom.csv").contacts[0]

    assert first.email == "ada.personal@example.com"
    assert first.traits["title"] == "Dr"


def test_a_mapping_file_with_unknown_targets_names_each_one() -> None:
    with pytest.raises(ImportFileError) as caught:
        load_mapping(FIXTURES / "mapping_typos.yaml")

    first, size, colour = caught.value.problems
    assert first.startswith('mapping_typos.yaml: columns."First": "frist_name" is not something kindling')
    assert '(did you mean "first_name"?)' in first
    assert '"company-size"' in size and '"traits.<name>" for a trait of your own' in size
    assert '"traits.favourite colour": a trait name is letters, digits' in colour


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("email: Email\n", "a mapping file has one key, columns"),
        ("columns: {}\nrows: 3\n", "unknown key rows"),
        ("columns: [Email]\n", "columns must map each header to a name"),
        ("columns: {Email: [email]\n", "is not valid YAML"),
    ],
)
def test_a_malformed_mapping_file_says_what_is_expected(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ImportFileError, match=problem):
        load_mapping(path)


def test_a_mapping_that_names_a_missing_column_is_refused_before_any_row() -> None:
    with pytest.raises(ImportFileError) as caught:
        read_csv(FIXTURES / "contacts_custom.csv", {"Work E-mail": "email", "Mobile": "phone"})

    assert caught.value.problems[:1] == ['contacts_custom.csv has no column "Mobile" (the mapping names it)']
    assert caught.value.problems[1].startswith("its columns are: Work Email, Customer Ref, Title")


def test_a_file_with_no_address_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Name,Work Mail\nAda,ada@example.com\n", encoding="utf-8")

    with pytest.raises(ImportFileError, match="no column reads as an email address or a user id"):
        read_csv(path)
    assert read_csv(path, {"Work Mail": "email"}).contacts[0].email == "ada@example.com"


def test_malformed_lines_are_rejected_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "email,company\n"
        "ada@example.com,Analytical Engines\n"
        "bob@example.com,Smith, Jones and Partners\n"
        'carol@example.com,"The "Best" Company"\n'
        "dan@example.com,\n"
        "erin@example.com\n",
        encoding="utf-8",
    )

    parsed = read_csv(path)

    assert [c.email for c in parsed.contacts] == ["ada@example.com", "dan@example.com", "erin@example.com"]
    shifted, quoted = parsed.rejected
    assert shifted.row == 3
    assert shifted.reason == "3 values under 2 columns: a value with a comma in it must be in quotes"
    assert quoted.row == 4
    assert quoted.reason.startswith("cannot be read as CSV (")
    assert quoted.reason.endswith("a value with a quote in it must be in quotes, its own quotes doubled")


def test_a_file_that_is_not_utf8_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes("email,company\nsoren@example.dk,Københavns\n".encode("cp1252"))

    with pytest.raises(ImportFileError, match=r'export.csv is not UTF-8 \(line 2 .*save it as "CSV UTF-8"'):
        read_csv(path)


# --- Mautic ----------------------------------------------------------------------------------------


def test_mautic_contacts_read_with_mautics_field_aliases() -> None:
    parsed = read_mautic(FIXTURES / "mautic" / "contacts.csv")

    grace = by_email(parsed)["grace@fintech.io"]
    assert grace.user_id is None
    assert grace.stage == "mql"
    assert grace.traits == {
        "mautic_id": "12",
        "salutation": "Ms",  # Mautic's "title"
        "first_name": "Grace",
        "last_name": "Hopper",
        "company": "Fintech IO",
        "title": "VP Engineering",  # Mautic's "position"
        "phone": "+1 202 555 0143",
        "mautic_points": "85",
        "city": "Arlington",
        "state": "Virginia",
        "zipcode": "22201",
        "country": "United States",
        "preferred_locale": "en_US",
        "timezone": "America/New_York",
        "last_active": "2024-05-02 14:03:11",
        "website": "https://fintech.io",
        "dateadded": "2023-11-08 09:12:40",
    }
    assert by_email(parsed)["claude@belllabs.example"].email == "claude@belllabs.example"
    assert parsed.rejected == [
        Rejected(5, "contacts.csv:5", "no email and no user id: nothing says who this is")
    ]


def test_mautic_do_not_contact_reasons() -> None:
    parsed = read_mautic(FIXTURES / "mautic" / "contacts.csv", FIXTURES / "mautic" / "do_not_contact.csv")

    assert parsed.suppressions == [
        SuppressionRow(2, "do_not_contact.csv:2", "alan@bletchley.example", "unsubscribed"),
        SuppressionRow(3, "do_not_contact.csv:3", "claude@belllabs.example", "bounced"),
        SuppressionRow(4, "do_not_contact.csv:4", "barbara@mit.example", "manual"),
    ]
    contacts = by_email(parsed)
    assert contacts["alan@bletchley.example"].unsubscribed  # reason 1
    assert contacts["barbara@mit.example"].unsubscribed  # reason 3
    assert not contacts["claude@belllabs.example"].unsubscribed  # a bounce is the suppression list's
    assert not contacts["grace@fintech.io"].unsubscribed  # her entry is for SMS
    assert parsed.skipped == {
        "do-not-contact entries for the sms channel (only email is imported)": 1,
        "do-not-contact entries with reason 0 (contactable)": 1,
    }
    assert [(r.source_ref, r.reason) for r in parsed.rejected[1:]] == [
        ("do_not_contact.csv:7", "no email address"),
        (
            "do_not_contact.csv:8",
            "reason '7' is not one of Mautic's: 1 (unsubscribed), 2 (bounced), 3 (manual)",
        ),
    ]


def test_a_mautic_report_with_lower_case_headers_and_reason_labels(tmp_path: Path) -> None:
    report = tmp_path / "dnc.csv"
    report.write_text(
        "email;reason\nAlan@Bletchley.example;Unsubscribed\nclaude@belllabs.example;Bounced\n",
        encoding="utf-8",
    )

    parsed = read_mautic(FIXTURES / "mautic" / "contacts.csv", report)

    assert [(s.email, s.reason) for s in parsed.suppressions] == [
        ("alan@bletchley.example", "unsubscribed"),
        ("claude@belllabs.example", "bounced"),
    ]
    assert by_email(parsed)["alan@bletchley.example"].unsubscribed


# --- HubSpot ---------------------------------------------------------------------------------------


def test_hubspot_contacts_export() -> None:
    parsed = read_hubspot(FIXTURES / "hubspot" / "contacts.csv")

    contacts = by_email(parsed)
    grace = contacts["grace@fintech.io"]
    assert grace.user_id is None
    assert grace.traits == {
        "hubspot_record_id": "51",
        "first_name": "Grace",
        "last_name": "Hopper",
        "phone": "+1 202 555 0143",
        "company": "Fintech IO",
        "title": "VP Engineering",
        "industry": "Financial Services",
        "company_size": 250,
        "country": "United States",
        "timezone": "America/New_York",  # HubSpot's america_slash_new_york
        "contact_owner": "Sam Seller",
        "lead_status": "Open",
        "create_date": "2023-11-08 09:12",
    }
    assert {email: c.stage for email, c in contacts.items()} == {
        "grace@fintech.io": "mql",
        "alan@bletchley.example": "sql",
        "ada@example.com": "customer",
        "barbara@mit.example": None,
    }
    assert contacts["alan@bletchley.example"].traits["timezone"] == "Europe/London"
    ada = contacts["ada@example.com"]
    assert ada.unsubscribed  # "Unsubscribed from all email": true
    assert ada.traits["company_size"] == 1200
    assert [r.source_ref for r in parsed.rejected] == ["contacts.csv:5"]


def test_hubspot_unsubscribes_and_bounces() -> None:
    parsed = read_hubspot(
        FIXTURES / "hubspot" / "contacts.csv", FIXTURES / "hubspot" / "unsubscribes_and_bounces.csv"
    )

    assert [(s.row, s.email, s.reason) for s in parsed.suppressions] == [
        (2, "alan@bletchley.example", "unsubscribed"),
        (3, "barbara@mit.example", "complained"),
        (4, "bounced@nowhere.example", "bounced"),  # a portal and a global bounce: one suppression
        (5, "hard@bounce.example", "bounced"),
    ]
    contacts = by_email(parsed)
    assert contacts["alan@bletchley.example"].unsubscribed
    assert contacts["barbara@mit.example"].unsubscribed
    assert not contacts["grace@fintech.io"].unsubscribed
    assert parsed.skipped == {"addresses with no bounce, spam report or unsubscribe marked": 1}
    assert [(r.source_ref, r.reason) for r in parsed.rejected] == [
        ("contacts.csv:5", "no email and no user id: nothing says who this is"),
        ("unsubscribes_and_bounces.csv:7", "no email address"),
    ]


def test_a_file_that_is_not_hubspots_suppression_export_is_refused() -> None:
    with pytest.raises(ImportFileError, match="is not HubSpot's unsubscribes and bounces export"):
        read_hubspot(FIXTURES / "hubspot" / "contacts.csv", FIXTURES / "contacts.csv")


# --- Amazon Pinpoint -------------------------------------------------------------------------------


def test_pinpoint_export_folder_read_recursively_gzipped_and_plain() -> None:
    parsed = read_pinpoint(PINPOINT)

    assert [c.email for c in parsed.contacts] == [
        "ada@example.com",
        "grace@fintech.io",
        "alan@bletchley.example",
        "katherine@example.net",
        "hedy@lamarr.example",
    ]
    ada = parsed.contacts[0]
    assert (ada.row, ada.source_ref) == (2, "export/7f3a2c/part-00000.gz:2")
    assert (ada.user_id, ada.stage, ada.unsubscribed) == ("u-100", "mql", False)
    assert ada.traits == {
        "interests": "Analytics, Email",
        "lead_source": "Webinar",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "title": "CTO",
        "timezone": "Europe/London",
        "locale": "en_GB",
        "country": "GB",
        "city": "London",
        "pinpoint_endpoint_id": "ep-ada",
    }


def test_pinpoint_prefers_the_active_endpoint_then_the_latest() -> None:
    contacts = by_email(read_pinpoint(PINPOINT))

    # ACTIVE (March) over INACTIVE (June), whatever the dates
    assert contacts["ada@example.com"].traits["pinpoint_endpoint_id"] == "ep-ada"
    # both ACTIVE: May's, from the second file, over January's
    grace = contacts["grace@fintech.io"]
    assert (grace.traits["company"], grace.row, grace.source_ref) == (
        "Fintech IO",
        8,
        "export/7f3a2c/part-00001.json:1",
    )


def test_pinpoint_opt_outs() -> None:
    contacts = by_email(read_pinpoint(PINPOINT))

    assert contacts["alan@bletchley.example"].unsubscribed  # OptOut ALL
    assert not contacts["grace@fintech.io"].unsubscribed
    # the preferred endpoint says NONE, an older one for the address said ALL
    assert contacts["hedy@lamarr.example"].unsubscribed


def test_pinpoint_other_channels_are_skipped_and_counted() -> None:
    parsed = read_pinpoint(PINPOINT)

    assert parsed.skipped == {
        "SMS endpoints (only EMAIL endpoints are imported)": 2,
        "APNS endpoints (only EMAIL endpoints are imported)": 1,
        DUPLICATES: 3,
    }
    assert parsed.rejected == [
        Rejected(7, "export/7f3a2c/part-00000.gz:8", "no email and no user id: nothing says who this is")
    ]
    assert parsed.suppressions == []


def test_pinpoint_demographic_and_location_become_traits() -> None:
    katherine = by_email(read_pinpoint(PINPOINT))["katherine@example.net"]

    assert katherine.user_id is None
    assert katherine.traits == {
        "company_size": 3000,
        "interests": "Orbits, Rockets",
        "first_name": "Katherine",
        "last_name": "Johnson",
        "timezone": "America/Chicago",
        "country": "US",
        "region": "VA",
        "pinpoint_endpoint_id": "ep-katherine",
    }


def test_a_single_gzipped_export_file(tmp_path: Path) -> None:
    path = tmp_path / "export.gz"
    lines = (
        b'{"ChannelType":"EMAIL","Address":" Ada@Example.COM","User":{"UserId":"u-1"}}\n'
        b"this is not json\n"
        b"[1, 2]\n"
        b'{"Address":"nochannel@example.com"}\n'
    )
    path.write_bytes(gzip.compress(lines))

    parsed = read_pinpoint(path)

    assert [(c.email, c.user_id, c.source_ref) for c in parsed.contacts] == [
        ("ada@example.com", "u-1", "export.gz:1")
    ]
    assert [(r.row, r.reason.split(":")[0]) for r in parsed.rejected] == [
        (2, "not a JSON endpoint"),
        (3, "not a JSON endpoint"),
        (4, "the endpoint has no ChannelType"),
    ]


def test_a_damaged_gzip_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "part-0.gz").write_bytes(gzip.compress(b'{"ChannelType":"EMAIL"}\n')[:-12])

    with pytest.raises(ImportFileError, match=r"part-0\.gz cannot be read \(.*\)"):
        read_pinpoint(tmp_path)


def test_an_empty_pinpoint_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an export", encoding="utf-8")

    with pytest.raises(ImportFileError, match=r"no export files \(\*.gz, \*.json\) found"):
        read_pinpoint(tmp_path)


ONE_ENDPOINT = b'{"ChannelType":"EMAIL","Address":"someone@example.com"}\n'


class FakeS3:
    """What boto3's S3 client gives the reader: pages of keys, then each object's body."""

    def __init__(self, objects: dict[str, bytes], page_size: int = 2) -> None:
        self.objects = objects
        self.page_size = page_size
        self.listed: list[dict[str, Any]] = []
        self.read: list[str] = []

    def get_paginator(self, operation_name: str) -> FakeS3:
        assert operation_name == "list_objects_v2"
        return self

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.listed.append(kwargs)
        keys = sorted(k for k in self.objects if k.startswith(kwargs["Prefix"]))
        pages = [keys[i : i + self.page_size] for i in range(0, len(keys), self.page_size)]
        if not pages:
            return [{"KeyCount": 0}]
        return [
            {"Contents": [{"Key": key, "Size": len(self.objects[key])} for key in page]} for page in pages
        ]

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        assert Bucket == "acme-pinpoint-exports"
        self.read.append(Key)
        return {"Body": io.BytesIO(self.objects[Key])}


def test_an_s3_export_is_listed_page_by_page_and_read_the_same(tmp_path: Path) -> None:
    folder = PINPOINT / "export" / "7f3a2c"
    job = "exports/2024-07-01/7f3a2c"
    client = FakeS3(
        {
            f"{job}/part-00000.gz": (folder / "part-00000.gz").read_bytes(),
            f"{job}/part-00001.json": (folder / "part-00001.json").read_bytes(),
            f"{job}/_manifest.txt": b"not an export file",
            "exports/2024-06-01/old/part-00000.gz": gzip.compress(ONE_ENDPOINT),
        }
    )

    from_s3 = read_pinpoint(f"s3://acme-pinpoint-exports/{job}/", s3_client=client)

    assert client.listed == [{"Bucket": "acme-pinpoint-exports", "Prefix": f"{job}/"}]
    assert client.read == [f"{job}/part-00000.gz", f"{job}/part-00001.json"]
    shutil.copytree(folder, tmp_path / "7f3a2c")
    from_disk = read_pinpoint(tmp_path / "7f3a2c")
    assert from_s3 == from_disk
    assert from_s3.contacts[1].source_ref == "part-00001.json:1"


def test_an_s3_prefix_that_is_part_of_a_name_keeps_the_rest_in_the_reference() -> None:
    client = FakeS3({"exports/job-1/part-0.gz": gzip.compress(ONE_ENDPOINT)})

    parsed = read_pinpoint("s3://acme-pinpoint-exports/exports/job", s3_client=client)

    assert parsed.contacts[0].source_ref == "job-1/part-0.gz:1"


def test_an_s3_object_that_cannot_be_read_is_a_file_problem() -> None:
    class Refusing(FakeS3):
        def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")

    client = Refusing({"exports/job/part-0.gz": gzip.compress(ONE_ENDPOINT)})

    with pytest.raises(ImportFileError, match=r"^part-0\.gz cannot be read \(.*AccessDenied"):
        read_pinpoint("s3://acme-pinpoint-exports/exports/job/", s3_client=client)
