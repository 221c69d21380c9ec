// Command evidencecheck checks fairwatch's evidence formats with Go's own implementations,
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, so that the tests compare
// fairwatch's Python code against an implementation it does not share.
//
// Each subcommand reads one JSON request on stdin, prints its result and exits 0, or prints a
// one-line reason on stderr and exits 1:
//
//	note         {"note": "...", "verifiers": ["vkey", ...]}       -> the verified signers' key ids
//	checkpoint   {"note": "...", "verifiers": ["vkey", ...]}       -> origin, size, root, then the signers
//	inclusion    {"size", "index", "leaf_hash", "root", "proof"}   -> tlog.CheckRecord
//	consistency  {"old_size", "old_root", "new_size", "new_root", "proof"} -> tlog.CheckTree
//	sign         {"skey": "PRIVATE+KEY+...", "text": "..."}        -> the signed note
//
// Hashes are base64 strings.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func main() {
	if len(os.Args) != 2 {
		fail(errors.New("usage: evidencecheck note|checkpoint|inclusion|consistency|sign < request.json"))
	}
	commands := map[string]func(*json.Decoder) (string, error){
		"note":        checkNote,
		"checkpoint":  checkCheckpoint,
		"inclusion":   checkInclusion,
		"consistency": checkConsistency,
		"sign":        sign,
	}
	command, ok := commands[os.Args[1]]
	if !ok {
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
	decoder := json.NewDecoder(os.Stdin)
	decoder.DisallowUnknownFields()
	out, err := command(decoder)
	if err != nil {
		fail(err)
	}
	fmt.Print(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, strings.ReplaceAll(err.Error(), "\n", " "))
	os.Exit(1)
}

type noteRequest struct {
	Note      string   `json:"note"`
	Verifiers []string `json:"verifiers"`
}

func openNote(decoder *json.Decoder) (*note.Note, error) {
	var req noteRequest
	if err := decoder.Decode(&req); err != nil {
		return nil, fmt.Errorf("bad request: %v", err)
	}
	var verifiers []note.Verifier
	for _, vkey := range req.Verifiers {
		verifier, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, fmt.Errorf("verifier key %q: %v", vkey, err)
		}
		verifiers = append(verifiers, verifier)
	}
	return note.Open([]byte(req.Note), note.VerifierList(verifiers...))
}

func signers(n *note.Note) string {
	var out strings.Builder
	for _, sig := range n.Sigs {
		fmt.Fprintf(&out, "%s+%08x\n", sig.Name, sig.Hash)
	}
	return out.String()
}

func checkNote(decoder *json.Decoder) (string, error) {
	n, err := openNote(decoder)
	if err != nil {
		return "", err
	}
	return signers(n), nil
}

// checkCheckpoint opens a C2SP tlog-checkpoint. tlog.ParseTree reads the go.sum database's
// three-line form, whose first line is fixed; a checkpoint's first line is the log's origin.
func checkCheckpoint(decoder *json.Decoder) (string, error) {
	n, err := openNote(decoder)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return "", errors.New("malformed checkpoint: fewer than three lines")
	}
	for _, line := range lines {
		if line == "" {
			return "", errors.New("malformed checkpoint: an empty line")
		}
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return "", fmt.Errorf("malformed checkpoint: bad tree size %q", lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil || root.String() != lines[2] {
		return "", fmt.Errorf("malformed checkpoint: bad root hash %q", lines[2])
	}
	return fmt.Sprintf("%s\n%d\n%s\n%s", lines[0], size, root, signers(n)), nil
}

type inclusionRequest struct {
	Size     int64            `json:"size"`
	Index    int64            `json:"index"`
	LeafHash tlog.Hash        `json:"leaf_hash"`
	Root     tlog.Hash        `json:"root"`
	Proof    tlog.RecordProof `json:"proof"`
}

func checkInclusion(decoder *json.Decoder) (string, error) {
	var req inclusionRequest
	if err := decoder.Decode(&req); err != nil {
		return "", fmt.Errorf("bad request: %v", err)
	}
	if err := tlog.CheckRecord(req.Proof, req.Size, req.Root, req.Index, req.LeafHash); err != nil {
		return "", err
	}
	return fmt.Sprintf("record %d is in the tree of size %d\n", req.Index, req.Size), nil
}

type consistencyRequest struct {
	OldSize int64          `json:"old_size"`
	OldRoot tlog.Hash      `json:"old_root"`
	NewSize int64          `json:"new_size"`
	NewRoot tlog.Hash      `json:"new_root"`
	Proof   tlog.TreeProof `json:"proof"`
}

func checkConsistency(decoder *json.Decoder) (string, error) {
	var req consistencyRequest
	if err := decoder.Decode(&req); err != nil {
		return "", fmt.Errorf("bad request: %v", err)
	}
	if err := tlog.CheckTree(req.Proof, req.NewSize, req.NewRoot, req.OldSize, req.OldRoot); err != nil {
		return "", err
	}
	return fmt.Sprintf("the tree of size %d extends the tree of size %d\n", req.NewSize, req.OldSize), nil
}

type signRequest struct {
	SKey string `json:"skey"`
	Text string `json:"text"`
}

func sign(decoder *json.Decoder) (string, error) {
	var req signRequest
	if err := decoder.Decode(&req); err != nil {
		return "", fmt.Errorf("bad request: %v", err)
	}
	signer, err := note.NewSigner(req.SKey)
	if err != nil {
		return "", fmt.Errorf("bad signer key: %v", err) // never the key itself
	}
	msg, err := note.Sign(&note.Note{Text: req.Text}, signer)
	if err != nil {
		return "", err
	}
	return string(msg), nil
}
