package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// TableDef is one table Plinth needs: what `plinth schema dynamodb` prints
// and what Prepare creates or checks.
type TableDef struct {
	Name    string  `json:"tableName"`
	Hash    string  `json:"partitionKey"` // both key attributes are strings
	Range   string  `json:"sortKey"`
	Indexes []Index `json:"globalSecondaryIndexes,omitempty"`
	Entity  string  `json:"entity,omitempty"` // domain/plural, or "" for the system table
}

// Tables returns the table definitions for the domains, system table first.
func Tables(prefix string, shards int, domains []*plinth.Domain) ([]TableDef, error) {
	out := []TableDef{{Name: prefix + "plinth", Hash: "pk", Range: "sk"}}
	for _, d := range domains {
		for _, e := range d.Entities {
			l := newLayout(e, prefix, shards)
			ix := l.indexes()
			if len(ix) > MaxTableGSIs {
				return nil, fmt.Errorf("dynamodb: %s/%s needs %d global secondary indexes (one per exact filter, two per prefix filter, one for updatedAt), over DynamoDB's limit of %d per table",
					d.Name, e.Plural, len(ix), MaxTableGSIs)
			}
			out = append(out, TableDef{Name: l.table, Hash: "sh", Range: "k", Indexes: ix, Entity: d.Name + "/" + e.Plural})
		}
	}
	return out, nil
}

// Prepare creates the tables and indexes the domains need (or, with
// Options.Check, verifies that they exist and match), and records the
// layouts.
func (s *Store) Prepare(ctx context.Context, domains []*plinth.Domain) error {
	defs, err := Tables(s.opts.Prefix, s.opts.Shards, domains)
	if err != nil {
		return err
	}
	var problems []string
	for _, def := range defs {
		if s.opts.Check {
			problems = append(problems, s.checkTable(ctx, def)...)
			continue
		}
		if err := s.ensureTable(ctx, def); err != nil {
			return err
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("dynamodb: the tables do not match the domains (create them with `plinth schema apply`, or from `plinth schema dynamodb --format terraform`):\n  %s",
			strings.Join(problems, "\n  "))
	}
	if err := s.checkShards(ctx, defs); err != nil {
		return err
	}
	if err := s.findLegacy(ctx); err != nil {
		return err
	}
	for _, d := range domains {
		for _, e := range d.Entities {
			s.layouts.Store(d.Name+"/"+e.Plural, newLayout(e, s.opts.Prefix, s.opts.Shards))
		}
	}
	all := append([]*plinth.Domain(nil), domains...)
	s.domains.Store(&all)
	return nil
}

func (s *Store) describe(ctx context.Context, name string) (*types.TableDescription, error) {
	out, err := s.db.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(name)})
	var rnf *types.ResourceNotFoundException
	if errors.As(err, &rnf) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err, "describe "+name)
	}
	return out.Table, nil
}

// ensureTable creates a missing table, or adds the indexes it lacks.
func (s *Store) ensureTable(ctx context.Context, def TableDef) error {
	desc, err := s.describe(ctx, def.Name)
	if err != nil {
		return err
	}
	if desc == nil {
		return s.createTable(ctx, def)
	}
	have := map[string]bool{}
	for _, g := range desc.GlobalSecondaryIndexes {
		have[aws.ToString(g.IndexName)] = true
	}
	for _, ix := range def.Indexes {
		if have[ix.Name] {
			continue
		}
		_, err := s.db.UpdateTable(ctx, &ddb.UpdateTableInput{
			TableName:            aws.String(def.Name),
			AttributeDefinitions: attrDefs(def.Hash, def.Range, []Index{ix}),
			GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: &types.CreateGlobalSecondaryIndexAction{
				IndexName: aws.String(ix.Name), KeySchema: indexKeys(ix), Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
			}}},
		})
		if err != nil {
			return wrap(err, "add index "+ix.Name+" to "+def.Name)
		}
		if err := s.waitActive(ctx, def.Name); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) createTable(ctx context.Context, def TableDef) error {
	in := &ddb.CreateTableInput{
		TableName:            aws.String(def.Name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: attrDefs(def.Hash, def.Range, def.Indexes),
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(def.Hash), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(def.Range), KeyType: types.KeyTypeRange}},
	}
	for _, ix := range def.Indexes {
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
			IndexName: aws.String(ix.Name), KeySchema: indexKeys(ix), Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}})
	}
	if _, err := s.db.CreateTable(ctx, in); err != nil {
		var inUse *types.ResourceInUseException
		if !errors.As(err, &inUse) { // another process created it meanwhile
			return wrap(err, "create "+def.Name)
		}
	}
	return s.waitActive(ctx, def.Name)
}

// waitActive waits until a table and its indexes are active (AWS creates
// them asynchronously; emulators at once).
func (s *Store) waitActive(ctx context.Context, name string) error {
	for i := 0; ; i++ {
		desc, err := s.describe(ctx, name)
		if err != nil {
			return err
		}
		active := desc != nil && (desc.TableStatus == types.TableStatusActive || desc.TableStatus == "")
		for _, g := range desc.GlobalSecondaryIndexes {
			if g.IndexStatus != types.IndexStatusActive && g.IndexStatus != "" {
				active = false
			}
		}
		if active {
			return nil
		}
		if i > 600 {
			return fmt.Errorf("dynamodb: table %s is not active after 10 minutes", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// checkTable lists how a table differs from its definition.
func (s *Store) checkTable(ctx context.Context, def TableDef) []string {
	desc, err := s.describe(ctx, def.Name)
	if err != nil {
		return []string{err.Error()}
	}
	if desc == nil {
		return []string{fmt.Sprintf("table %s is missing", def.Name)}
	}
	var out []string
	if got := keysOf(desc.KeySchema); !slices.Equal(got, []string{def.Hash, def.Range}) {
		out = append(out, fmt.Sprintf("table %s has key %v, want [%s %s]", def.Name, got, def.Hash, def.Range))
	}
	have := map[string][]string{}
	for _, g := range desc.GlobalSecondaryIndexes {
		have[aws.ToString(g.IndexName)] = keysOf(g.KeySchema)
	}
	for _, ix := range def.Indexes {
		got, ok := have[ix.Name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("table %s lacks the global secondary index %s (hash %s, range %s)", def.Name, ix.Name, ix.Hash, ix.Range()))
		case !slices.Equal(got, []string{ix.Hash, ix.Range()}):
			out = append(out, fmt.Sprintf("table %s: index %s has key %v, want [%s %s]", def.Name, ix.Name, got, ix.Hash, ix.Range()))
		}
	}
	return out
}

func keysOf(ks []types.KeySchemaElement) []string {
	out := make([]string, len(ks))
	for _, k := range ks {
		i := 0
		if k.KeyType == types.KeyTypeRange {
			i = 1
		}
		if i < len(out) {
			out[i] = aws.ToString(k.AttributeName)
		}
	}
	return out
}

func attrDefs(hash, rng string, ixs []Index) []types.AttributeDefinition {
	seen := map[string]bool{}
	var out []types.AttributeDefinition
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, types.AttributeDefinition{AttributeName: aws.String(name), AttributeType: types.ScalarAttributeTypeS})
		}
	}
	add(hash)
	add(rng)
	for _, ix := range ixs {
		add(ix.Hash)
		add(ix.Range())
	}
	return out
}

func indexKeys(ix Index) []types.KeySchemaElement {
	return []types.KeySchemaElement{{AttributeName: aws.String(ix.Hash), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String(ix.Range()), KeyType: types.KeyTypeRange}}
}

// checkShards records each entity table's shard count in the system table
// and refuses a store URL whose count differs: records would be looked up
// in the wrong partitions.
func (s *Store) checkShards(ctx context.Context, defs []TableDef) error {
	for _, def := range defs[1:] {
		key := sysKey("layout", def.Name)
		_, err := s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.sys),
			Item:                      withAttrs(key, map[string]types.AttributeValue{"shards": num(int64(s.opts.Shards))}),
			ConditionExpression:       aws.String("attribute_not_exists(pk) OR shards = :n"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":n": num(int64(s.opts.Shards))}})
		if isConditionFailed(err) {
			got, _ := s.getSys(ctx, key)
			return fmt.Errorf("dynamodb: table %s was created with shards=%d; the store URL says %d (add &shards=%d)",
				def.Name, numOf(got["shards"]), s.opts.Shards, numOf(got["shards"]))
		}
		if err != nil {
			return wrap(err, "record the layout of "+def.Name)
		}
	}
	return nil
}

// DropTables deletes the tables of the domains and the system table (tests
// and development resets).
func (s *Store) DropTables(ctx context.Context, domains []*plinth.Domain) error {
	defs, err := Tables(s.opts.Prefix, s.opts.Shards, domains)
	if err != nil {
		return err
	}
	for _, def := range defs {
		_, err := s.db.DeleteTable(ctx, &ddb.DeleteTableInput{TableName: aws.String(def.Name)})
		var rnf *types.ResourceNotFoundException
		if err != nil && !errors.As(err, &rnf) {
			return wrap(err, "delete "+def.Name)
		}
	}
	return nil
}
