package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/plinth-data/plinth"
)

var awsAccountID = regexp.MustCompile(`^[0-9]{12}$`)

// AccountIDs maps each domain with an owner.cloudAccount to the AWS
// account id its API must run in: the cloudAccount itself when it is an
// account id, else the id cloudAccounts gives its label. Outside
// development a label without an id is an error, so the Lambda authorizer
// never starts unable to check the account.
func (c Config) AccountIDs(ds []*plinth.Domain) (map[string]string, error) {
	labels := map[string]string{}
	for _, pair := range SplitList(c.CloudAccounts) {
		label, id, ok := strings.Cut(pair, "=")
		label, id = strings.TrimSpace(label), strings.TrimSpace(id)
		if !ok || label == "" || !awsAccountID.MatchString(id) {
			return nil, fmt.Errorf("cloudAccounts: %q must be label=<12-digit AWS account id>", pair)
		}
		labels[label] = id
	}
	out := map[string]string{}
	for _, d := range ds {
		acct := d.Owner.CloudAccount
		switch {
		case acct == "":
		case awsAccountID.MatchString(acct):
			out[d.Name] = acct
		case labels[acct] != "":
			out[d.Name] = labels[acct]
		case c.Environment != plinth.EnvDevelopment:
			return nil, fmt.Errorf("domain %s: owner.cloudAccount %q is not an AWS account id; give its id in cloudAccounts (PLINTH_CLOUD_ACCOUNTS=%s=123456789012)", d.Name, acct, acct)
		}
	}
	return out, nil
}
