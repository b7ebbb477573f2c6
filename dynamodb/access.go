package dynamodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// Grants are items "grant|{id}", policies "policy|{environment}|{domain}",
// each the JSON of the Go value; they are written in Write transactions,
// with their audit records.

func grantKey(id string) map[string]types.AttributeValue { return sysKey("grant", id) }
func policyKey(domain, env string) map[string]types.AttributeValue {
	return sysKey("policy|"+env, domain)
}

// accessWrite is a grant or policy change of a transaction, keyed by its
// item: a transaction may change one item once in DynamoDB, so later
// changes to the same grant or policy replace earlier ones.
type accessWrite struct {
	key    map[string]types.AttributeValue
	item   map[string]types.AttributeValue // nil: delete
	cond   string                          // condition on the stored item
	failed error                           // what the condition failing means
	value  any                             // the grant, for reads within the transaction
}

func (t *tx) setAccess(id string, w *accessWrite) {
	if t.access == nil {
		t.access = map[string]*accessWrite{}
	}
	if old, ok := t.access[id]; ok { // keep the first condition: it is about the stored item
		w.cond, w.failed = old.cond, old.failed
	} else {
		t.accessOrder = append(t.accessOrder, id)
	}
	t.access[id] = w
}

func (t *tx) accessItems(b *txItems) {
	for _, id := range t.accessOrder {
		w := t.access[id]
		var cond *string
		if w.cond != "" {
			cond = aws.String(w.cond)
		}
		if w.item == nil {
			b.add(types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(t.s.sys), Key: w.key, ConditionExpression: cond}}, w.failed)
			continue
		}
		b.add(types.TransactWriteItem{Put: &types.Put{TableName: aws.String(t.s.sys), Item: w.item, ConditionExpression: cond}}, w.failed)
	}
}

func jsonItem(key map[string]types.AttributeValue, v any) (map[string]types.AttributeValue, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return withAttrs(key, map[string]types.AttributeValue{"j": str(string(b))}), nil
}

// grant reads a grant as the transaction sees it.
func (t *tx) grant(ctx context.Context, id string) (plinth.Grant, error) {
	if w, ok := t.access["grant|"+id]; ok {
		if g, ok := w.value.(plinth.Grant); ok {
			return g, nil
		}
	}
	return t.s.Grant(ctx, id)
}

// CreateGrant stores a new grant; ErrConflict when its ID exists.
func (t *tx) CreateGrant(ctx context.Context, g plinth.Grant) error {
	if g.ID == "" {
		return errors.New("dynamodb: create grant: the grant has no ID")
	}
	conflict := fmt.Errorf("dynamodb: create grant %q: %w", g.ID, plinth.ErrConflict)
	if _, err := t.grant(ctx, g.ID); err == nil {
		return conflict
	} else if !errors.Is(err, plinth.ErrNotFound) {
		return err
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = plinth.Now()
	}
	if g.UpdatedAt.IsZero() {
		g.UpdatedAt = g.CreatedAt
	}
	if g.Methods == nil {
		g.Methods = []string{}
	}
	g = utcGrant(g)
	it, err := jsonItem(grantKey(g.ID), g)
	if err != nil {
		return err
	}
	t.setAccess("grant|"+g.ID, &accessWrite{key: grantKey(g.ID), item: it, cond: "attribute_not_exists(pk)", failed: conflict, value: g})
	return nil
}

// SetGrantEnabled enables or disables a grant.
func (t *tx) SetGrantEnabled(ctx context.Context, id string, enabled bool) (plinth.Grant, error) {
	g, err := t.grant(ctx, id)
	if err != nil {
		return g, err
	}
	g.Enabled, g.UpdatedAt = enabled, plinth.Now()
	it, err := jsonItem(grantKey(id), g)
	if err != nil {
		return g, err
	}
	t.setAccess("grant|"+id, &accessWrite{key: grantKey(id), item: it, cond: "attribute_exists(pk)",
		failed: fmt.Errorf("dynamodb: grant %q: %w", id, plinth.ErrNotFound), value: g})
	return g, nil
}

// PutPolicy creates or replaces a policy.
func (t *tx) PutPolicy(ctx context.Context, p plinth.AccessPolicy) error {
	if p.Domain == "" || p.Environment == "" {
		return fmt.Errorf("dynamodb: put policy %s/%s: the policy needs a domain and an environment", p.Domain, p.Environment)
	}
	p.UpdatedAt = plinth.Now()
	for _, l := range []*[]string{&p.ReadGroups, &p.WriteGroups, &p.ReportingGroups} {
		if *l == nil {
			*l = []string{}
		}
	}
	it, err := jsonItem(policyKey(p.Domain, p.Environment), p)
	if err != nil {
		return err
	}
	t.setAccess("policy|"+p.Environment+"|"+p.Domain, &accessWrite{key: policyKey(p.Domain, p.Environment), item: it, value: true})
	return nil
}

// DeletePolicy removes a policy; ErrNotFound when there is none.
func (t *tx) DeletePolicy(ctx context.Context, domain, env string) error {
	gone := fmt.Errorf("dynamodb: policy %s/%s: %w", domain, env, plinth.ErrNotFound)
	id := "policy|" + env + "|" + domain
	if w, ok := t.access[id]; ok {
		if w.item == nil {
			return gone
		}
		t.setAccess(id, &accessWrite{key: policyKey(domain, env)})
		return nil
	}
	it, err := t.s.getSys(ctx, policyKey(domain, env))
	if err != nil {
		return err
	}
	if it == nil {
		return gone
	}
	t.setAccess(id, &accessWrite{key: policyKey(domain, env), cond: "attribute_exists(pk)", failed: gone})
	return nil
}

func (s *Store) accessWrite(ctx context.Context, fn func(*tx) error) error {
	return s.Write(ctx, func(ptx plinth.Tx) error { return fn(ptx.(*tx)) })
}

// CreateGrant stores a new grant.
func (s *Store) CreateGrant(ctx context.Context, g plinth.Grant) error {
	return s.accessWrite(ctx, func(t *tx) error { return t.CreateGrant(ctx, g) })
}

// SetGrantEnabled enables or disables a grant and returns it.
func (s *Store) SetGrantEnabled(ctx context.Context, id string, enabled bool) (plinth.Grant, error) {
	var g plinth.Grant
	err := s.accessWrite(ctx, func(t *tx) error {
		var err error
		g, err = t.SetGrantEnabled(ctx, id, enabled)
		return err
	})
	return g, err
}

// PutPolicy creates or replaces a policy.
func (s *Store) PutPolicy(ctx context.Context, p plinth.AccessPolicy) error {
	return s.accessWrite(ctx, func(t *tx) error { return t.PutPolicy(ctx, p) })
}

// DeletePolicy removes a policy.
func (s *Store) DeletePolicy(ctx context.Context, domain, env string) error {
	return s.accessWrite(ctx, func(t *tx) error { return t.DeletePolicy(ctx, domain, env) })
}

// Grant reads one grant.
func (s *Store) Grant(ctx context.Context, id string) (plinth.Grant, error) {
	var g plinth.Grant
	it, err := s.getSys(ctx, grantKey(id))
	if err != nil {
		return g, err
	}
	if it == nil {
		return g, fmt.Errorf("dynamodb: grant %q: %w", id, plinth.ErrNotFound)
	}
	err = json.Unmarshal([]byte(strOf(it["j"])), &g)
	return utcGrant(g), err
}

func utcGrant(g plinth.Grant) plinth.Grant {
	g.CreatedAt = g.CreatedAt.UTC().Truncate(time.Microsecond)
	g.UpdatedAt = g.UpdatedAt.UTC().Truncate(time.Microsecond)
	if !g.ExpiresAt.IsZero() {
		g.ExpiresAt = g.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
	return g
}

// Grants lists grants in ID order.
func (s *Store) Grants(ctx context.Context, after string, limit int) ([]plinth.Grant, bool, error) {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	out := []plinth.Grant{}
	more := false
	var derr error
	err := s.querySys(ctx, "grant", after, "", int32(limit+1), func(it map[string]types.AttributeValue) bool {
		if len(out) == limit {
			more = true
			return false
		}
		var g plinth.Grant
		if derr = json.Unmarshal([]byte(strOf(it["j"])), &g); derr != nil {
			return false
		}
		out = append(out, utcGrant(g))
		return true
	})
	return out, more, errors.Join(err, derr)
}

// Policies returns the policies of an environment, by domain.
func (s *Store) Policies(ctx context.Context, env string) ([]plinth.AccessPolicy, error) {
	out := []plinth.AccessPolicy{}
	var derr error
	err := s.querySys(ctx, "policy|"+env, "", "", 0, func(it map[string]types.AttributeValue) bool {
		var p plinth.AccessPolicy
		if derr = json.Unmarshal([]byte(strOf(it["j"])), &p); derr != nil {
			return false
		}
		p.UpdatedAt = p.UpdatedAt.UTC()
		out = append(out, p)
		return true
	})
	return out, errors.Join(err, derr)
}
