package postgres

import (
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) plinth.Store {
		s, _ := openStore(t, storetest.Domains(t))
		return s
	})
}

func TestAccessContract(t *testing.T) {
	storetest.RunAccess(t, func(t *testing.T) plinth.AccessStore {
		s, _ := openStore(t, storetest.Domains(t))
		return s
	})
}

func TestAuditContract(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) plinth.Store {
		s, _ := openStore(t, storetest.Domains(t))
		return s
	})
}

func TestOutboxContract(t *testing.T) {
	storetest.RunOutbox(t, func(t *testing.T) plinth.Store {
		s, _ := openStore(t, storetest.Domains(t))
		return s
	})
}
