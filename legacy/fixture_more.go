package legacy

import (
	"fmt"
	"strings"
	"time"
)

// The benefits and council tax system (Academy): housing benefit claims,
// their households and members; council tax accounts, properties and
// occupations.
var benefitsTables = []fixtureTable{
	{name: "hbclaim", columns: []string{"claim_id", "check_digit", "status_ind"},
		ddl: `claim_id BIGINT PRIMARY KEY, check_digit CHAR(1), status_ind SMALLINT`},
	{name: "hbhousehold", columns: []string{"claim_id", "house_id", "addr1", "addr2", "addr3", "addr4", "post_code", "to_date"},
		ddl: `claim_id BIGINT NOT NULL, house_id BIGINT NOT NULL, addr1 VARCHAR(100), addr2 VARCHAR(100), addr3 VARCHAR(100), addr4 VARCHAR(100),
		post_code VARCHAR(12), to_date DATE, PRIMARY KEY (claim_id, house_id)`},
	{name: "hbmember", index: "person_ref", columns: []string{"claim_id", "house_id", "member_id", "person_ref", "title", "forename", "surname", "birth_date", "nino"},
		ddl: `claim_id BIGINT NOT NULL, house_id BIGINT NOT NULL, member_id BIGINT NOT NULL, person_ref BIGINT, title VARCHAR(10),
		forename VARCHAR(60), surname VARCHAR(60), birth_date VARCHAR(20), nino VARCHAR(15), PRIMARY KEY (claim_id, house_id, member_id)`},
	{name: "ctaccount", columns: []string{"account_ref", "lead_liab_title", "lead_liab_forename", "lead_liab_surname"},
		ddl: `account_ref BIGINT PRIMARY KEY, lead_liab_title VARCHAR(10), lead_liab_forename VARCHAR(60), lead_liab_surname VARCHAR(60)`},
	{name: "ctproperty", columns: []string{"property_ref", "addr1", "addr2", "addr3", "addr4", "postcode", "uprn"},
		ddl: `property_ref VARCHAR(20) PRIMARY KEY, addr1 VARCHAR(100), addr2 VARCHAR(100), addr3 VARCHAR(100), addr4 VARCHAR(100), postcode VARCHAR(12), uprn VARCHAR(20)`},
	{name: "ctoccupation", index: "account_ref", columns: []string{"account_ref", "property_ref", "vacation_date"},
		ddl: `account_ref BIGINT NOT NULL, property_ref VARCHAR(20) NOT NULL, vacation_date DATE, PRIMARY KEY (account_ref, property_ref)`},
}

// claim makes claim i: one to three households over time (the last
// current), two to four members in the current one, and a council tax
// account for the lead member.
func (g *caseGen) claim(id int64, rows map[string][][]any) {
	claim := 10000000 + id
	rows["hbclaim"] = append(rows["hbclaim"], []any{claim, fmt.Sprint(id % 10), int64(1 + g.r.IntN(4))})
	houses := 1 + g.r.IntN(3)
	end := time.Date(2010+g.r.IntN(10), time.Month(1+g.r.IntN(12)), 1, 0, 0, 0, 0, time.UTC)
	for h := 1; h <= houses; h++ {
		var to any
		if h < houses {
			to = end
			end = end.AddDate(1+g.r.IntN(3), 0, 0)
		}
		street := fmt.Sprintf("%d %s", 1+g.r.IntN(150), streets[g.r.IntN(len(streets))])
		rows["hbhousehold"] = append(rows["hbhousehold"], []any{claim, int64(h), g.mess(street), g.pick([]any{"Hackney", "", nil}),
			"London", nil, postcodes[g.r.IntN(len(postcodes))], to})
	}
	for mem := 1; mem <= 2+g.r.IntN(3); mem++ {
		dob := time.Date(1940+g.r.IntN(80), time.Month(1+g.r.IntN(12)), 1+g.r.IntN(28), 0, 0, 0, 0, time.UTC)
		text := dob.Format("02/01/2006")
		if g.r.IntN(3) == 0 {
			text = dob.Format("20060102")
		}
		var nino any
		if mem <= 2 && g.r.IntN(5) > 0 {
			nino = g.nino()
		}
		rows["hbmember"] = append(rows["hbmember"], []any{claim, int64(houses), int64(mem), 500000 + id*10 + int64(mem),
			g.pick(titles), g.mess(g.f.FirstName()), g.mess(g.f.LastName()), text, nino})
	}
	rows["ctaccount"] = append(rows["ctaccount"], []any{60000000 + id, g.pick(titles), g.mess(g.f.FirstName()), g.mess(g.f.LastName())})
	prop := fmt.Sprintf("P%08d", id)
	rows["ctproperty"] = append(rows["ctproperty"], []any{prop, g.mess(fmt.Sprintf("%d %s", 1+g.r.IntN(150), streets[g.r.IntN(len(streets))])),
		g.pick([]any{nil, "", "Flat " + fmt.Sprint(1+g.r.IntN(9))}), g.pick([]any{"London", "LONDON ", "Hackney"}), nil, postcodes[g.r.IntN(len(postcodes))],
		g.pick([]any{fmt.Sprintf(" %d ", 10000000000+g.r.IntN(90000000)), fmt.Sprint(100000000 + g.r.IntN(900000000)), "", nil})})
	rows["ctoccupation"] = append(rows["ctoccupation"], []any{60000000 + id, prop, nil})
	if id > 1 && g.r.IntN(4) == 0 { // the account's earlier home, since vacated (the previous claim's property)
		left := time.Date(2015+g.r.IntN(8), time.Month(1+g.r.IntN(12)), 1+g.r.IntN(28), 0, 0, 0, 0, time.UTC)
		rows["ctoccupation"] = append(rows["ctoccupation"], []any{60000000 + id, fmt.Sprintf("P%08d", id-1), left})
	}
}

// nino makes a National Insurance number, sometimes spaced or lower case.
func (g *caseGen) nino() string {
	const first, second = "ABCEGHJKLMNPRSTWXYZ", "ABCEGHJKLMNPRSTWXYZ"
	for {
		p := string(first[g.r.IntN(len(first))]) + string(second[g.r.IntN(len(second))])
		switch p {
		case "BG", "GB", "NK", "KN", "TN", "NT", "ZZ":
			continue
		}
		n := fmt.Sprintf("%s%06d%c", p, g.r.IntN(1000000), "ABCD"[g.r.IntN(4)])
		switch g.r.IntN(4) {
		case 0:
			return strings.ToLower(n)
		case 1:
			return n[:2] + " " + n[2:4] + " " + n[4:6] + " " + n[6:8] + " " + n[8:]
		}
		return n
	}
}

// The housing system (Universal Housing): tenancy agreements, the
// properties they let, the household members, and contact details.
var housingTables = []fixtureTable{
	{name: "property", columns: []string{"prop_ref", "house_ref", "address1", "post_code", "u_llpg_ref"},
		ddl: `prop_ref VARCHAR(12) PRIMARY KEY, house_ref VARCHAR(10), address1 VARCHAR(200), post_code VARCHAR(12), u_llpg_ref VARCHAR(20)`},
	{name: "tenagree", index: "house_ref", columns: []string{"tag_ref", "house_ref", "prop_ref", "tenure", "cot", "eot", "terminated"},
		ddl: `tag_ref VARCHAR(11) PRIMARY KEY, house_ref VARCHAR(10), prop_ref VARCHAR(12), tenure CHAR(3), cot DATETIME, eot DATETIME, ` + "`terminated`" + ` CHAR(1)`},
	{name: "member", columns: []string{"house_ref", "person_no", "title", "forename", "surname", "ni_no", "dob"},
		ddl: `house_ref VARCHAR(10) NOT NULL, person_no INT NOT NULL, title VARCHAR(10), forename VARCHAR(60), surname VARCHAR(60), ni_no VARCHAR(15),
		dob DATETIME, PRIMARY KEY (house_ref, person_no)`},
	// Contact details hang off contact links: Key1 holds the household
	// reference, Key2 the person number as text (null on some links, as in
	// production); a member may have two links, a number may be held twice.
	{name: "CCContactLink", index: "Key1", columns: []string{"contactno", "key1", "key2", "linktype", "linkno"},
		ddl: `ContactNo BIGINT PRIMARY KEY, Key1 VARCHAR(20), Key2 VARCHAR(10), LinkType VARCHAR(40), LinkNo INT`},
	{name: "CCPhone", index: "ContactNo", columns: []string{"phoneid", "contactno", "phoneno", "phonetype", "moddate"},
		ddl: `PhoneID BIGINT PRIMARY KEY, ContactNo BIGINT, PhoneNo VARCHAR(20), PhoneType VARCHAR(10), ModDate DATETIME`},
	{name: "CCEmailAddress", index: "ContactNo", columns: []string{"emailid", "contactno", "email", "emailtype", "moddate"},
		ddl: `EmailID BIGINT PRIMARY KEY, ContactNo BIGINT, Email VARCHAR(50), EmailType VARCHAR(5), ModDate DATETIME`},
}

var tenures = []any{"SEC", "INT", "TAF", "NON", "sec", "LEA"}

// tenancy makes tenancy agreement i of its household and property; every
// fourth household has an earlier, terminated tenancy too (eot set), and
// the legacy system's "no end" is 1900-01-01.
func (g *caseGen) tenancy(id int64, rows map[string][][]any) {
	house := fmt.Sprintf("%07d", id)
	prop := fmt.Sprintf("%08d", 10000000+id)
	rows["property"] = append(rows["property"], []any{prop, house, g.mess(fmt.Sprintf("%d %s", 1+g.r.IntN(150), streets[g.r.IntN(len(streets))])),
		postcodes[g.r.IntN(len(postcodes))], g.pick([]any{fmt.Sprintf("%d  ", 10000000000+g.r.IntN(90000000)), "", nil, fmt.Sprint(100000000 + g.r.IntN(900000000))})})
	start := time.Date(1995+g.r.IntN(25), time.Month(1+g.r.IntN(12)), 1+g.r.IntN(28), 0, 0, 0, 0, time.UTC)
	none := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	terminated := g.r.IntN(10) == 0
	eot := none
	if terminated {
		eot = start.AddDate(2+g.r.IntN(8), 0, 0)
	}
	rows["tenagree"] = append(rows["tenagree"], []any{fmt.Sprintf("%s/%02d", house, 1), house, prop, g.pick(tenures), start, eot, yn(terminated)})
	for p := 1; p <= 1+g.r.IntN(4); p++ {
		dob := time.Date(1935+g.r.IntN(85), time.Month(1+g.r.IntN(12)), 1+g.r.IntN(28), 0, 0, 0, 0, time.UTC)
		var ni any
		if p == 1 || g.r.IntN(2) == 0 {
			ni = g.nino()
		}
		rows["member"] = append(rows["member"], []any{house, int64(p), g.pick(titles), g.mess(g.f.FirstName()), g.mess(g.f.LastName()), ni, dob})
		g.contacts(house, int64(p), rows)
	}
}

var linkTypes = []any{"Person", "PERSON ", "person", nil}

// contacts makes a member's contact links and their phones and emails: a
// second, older link for some members, phone numbers held twice, padded
// and mixed-case values, empty emails, and links whose keys are null.
func (g *caseGen) contacts(house string, person int64, rows map[string][][]any) {
	links := 1
	if g.r.IntN(5) == 0 {
		links = 2
	}
	when := time.Date(2005+g.r.IntN(15), time.Month(1+g.r.IntN(12)), 1+g.r.IntN(28), 9, 0, 0, 0, time.UTC)
	for l := 0; l < links; l++ {
		g.nextContact++
		contact := g.nextContact
		rows["CCContactLink"] = append(rows["CCContactLink"], []any{contact, house, fmt.Sprint(person), g.pick(linkTypes), int64(l + 1)})
		for range g.r.IntN(3) {
			g.nextPhone++
			number := fmt.Sprintf("07%03d %06d", 700+g.r.IntN(300), g.r.IntN(1000000))
			rows["CCPhone"] = append(rows["CCPhone"], []any{g.nextPhone, contact, g.mess(number), g.pick(phoneTypes), when})
			if g.r.IntN(6) == 0 { // the same number again
				g.nextPhone++
				rows["CCPhone"] = append(rows["CCPhone"], []any{g.nextPhone, contact, number, g.pick(phoneTypes), when.AddDate(1, 0, 0)})
			}
		}
		if g.r.IntN(3) == 0 {
			g.nextEmail++
			email := g.pick([]any{fmt.Sprintf("member%s.%d@example.org", house, person), fmt.Sprintf(" Member%s.%d@Example.ORG ", house, person), "", nil})
			rows["CCEmailAddress"] = append(rows["CCEmailAddress"], []any{g.nextEmail, contact, email, g.pick([]any{"HOME", "work", nil}), when})
		}
	}
	if g.r.IntN(10) == 0 { // a link that names no one, found in production
		g.nextContact++
		rows["CCContactLink"] = append(rows["CCContactLink"], []any{g.nextContact, nil, nil, "Person", int64(1)})
		g.nextPhone++
		rows["CCPhone"] = append(rows["CCPhone"], []any{g.nextPhone, g.nextContact, "020 7946 0000", "HOME", when})
	}
}
