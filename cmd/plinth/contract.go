package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth/hub"
)

func contractCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contract",
		Short: "Make keys for, sign and verify data contracts offline",
		Long: `A data contract (from the Developer Hub at /hub) is canonical JSON (RFC 8785)
signed with Ed25519 by the requester and by the approver. These commands work
offline: private keys never leave the machine they were made on.`,
	}
	cmd.AddCommand(contractKeygenCommand(), contractSignCommand(), contractVerifyCommand())
	return cmd
}

func contractKeygenCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen NAME",
		Short: "Make an Ed25519 key pair: NAME.key (private, mode 0600) and NAME.pub",
		Long: `Make an Ed25519 key pair. NAME.key holds the private key (PKCS #8 PEM,
readable only by you); NAME.pub the public key to register in the Hub
(base64 of its 32 bytes). Existing files are never overwritten.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			priv, pub, err := hub.NewKey()
			if err != nil {
				return err
			}
			name := args[0]
			if err := writeNew(name+".key", priv, 0o600); err != nil {
				return err
			}
			if err := writeNew(name+".pub", []byte(pub+"\n"), 0o644); err != nil {
				os.Remove(name + ".key")
				return err
			}
			key, _ := hub.DecodePublicKey(pub)
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote %s.key (private: keep it) and %s.pub (register it in the Hub).\nPublic key: %s\nKey id:     %s\n",
				name, name, pub, hub.KeyID(key))
			return nil
		},
	}
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists already; choose another name (keys are never overwritten)", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func contractSignCommand() *cobra.Command {
	var keyFile, role, out string
	cmd := &cobra.Command{
		Use:   "sign FILE",
		Short: "Sign a contract as its requester or approver",
		Long: `Sign FILE (a contract from the Hub) with your private key as --role requester
or approver. The key must be the one the contract names for that role. The
signed contract is written back to FILE (or to --out) in canonical form.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return errors.New("--key is required: the private key file made by plinth contract keygen")
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			s, err := hub.ParseContractFile(b)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			kb, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			priv, err := hub.ParsePrivateKey(kb)
			if err != nil {
				return fmt.Errorf("%s: %w", keyFile, err)
			}
			if err := s.Sign(role, priv); err != nil {
				return err
			}
			enc, err := s.Encode()
			if err != nil {
				return err
			}
			if out == "" {
				out = args[0]
			}
			if err := os.WriteFile(out, enc, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Signed %s as %s; wrote %s\n", s.Contract.ID, role, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "private key file (PKCS #8 PEM)")
	cmd.Flags().StringVar(&role, "role", "", "requester or approver")
	cmd.Flags().StringVar(&out, "out", "", "write the signed contract here instead of FILE")
	return cmd
}

func contractVerifyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a contract's canonical form and signatures, offline",
		Long: `Check that FILE is canonical JSON (RFC 8785) in the contract format and that
every signature in it verifies against the keys the contract names. Any
change to a signed contract is detected.

Exit status: 0 when both parties signed and every check passes; 1 when a
check fails (changed, malformed or wrongly signed); 2 when what is there
verifies but a signature is missing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			s, err := hub.ParseContractFile(b)
			if err != nil {
				return fmt.Errorf("%s: INVALID: %w", args[0], err)
			}
			v, err := s.Verify()
			if err != nil {
				return fmt.Errorf("%s: INVALID: %w", args[0], err)
			}
			w := cmd.OutOrStdout()
			c := s.Contract
			fmt.Fprintf(w, "%s: contract %s: %s of %s in %s for %s\n", args[0], c.ID, strings.Join(c.Operations, ", "), strings.Join(c.Entities, ", "), c.Environment, c.Consumer)
			fmt.Fprintf(w, "  canonical form: ok\n  signed by: %s\n", strings.Join(v.Signed, ", "))
			if exp := c.Expiry(); time.Now().After(exp) {
				fmt.Fprintf(w, "  expired at %s\n", c.ExpiresAt)
			} else {
				fmt.Fprintf(w, "  expires at %s\n", c.ExpiresAt)
			}
			if !v.Complete {
				fmt.Fprintf(w, "  NOT IN FORCE: missing the signature of the %s\n", strings.Join(v.Missing, " and the "))
				return exitCode(2)
			}
			fmt.Fprintln(w, "  valid: both parties signed")
			return nil
		},
	}
}
