package main

// Sending messages and files, and downloading files.

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"
)

// takeMessageToken applies the per-user message and upload limit.
func (a *App) takeMessageToken(r *http.Request, s *Session) error {
	if a.limits.isExempt(a.clientAddr(r)) {
		return nil
	}
	if ok, wait := a.limits.messagesPerUser.take(s.User.ID, time.Now()); !ok {
		return rateLimited(seconds(wait))
	}
	return nil
}

// recipientName validates the "to" of a send.
func recipientName(to string, me User) (string, error) {
	name, err := normalizeUsername(to)
	if err != nil {
		return "", errNoSuchUser
	}
	if name == me.Username {
		return "", errMessageSelf
	}
	return name, nil
}

func (a *App) handleSendMessage(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		To          *string `json:"to"`
		Group       *int64  `json:"group"`
		Body        *string `json:"body"`
		ClientMsgID *string `json:"client_msg_id"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := oneTarget(req.To, req.Group, "to"); err != nil {
		return err
	}
	if req.Body == nil {
		return errInvalidBody.withMessage("body is required.")
	}
	if err := validateBody(*req.Body); err != nil {
		return err
	}
	clientMsgID := ""
	if req.ClientMsgID != nil {
		if err := validateClientMsgID(*req.ClientMsgID); err != nil {
			return err
		}
		clientMsgID = *req.ClientMsgID
	}
	var to string
	var gid int64
	var err error
	if req.Group != nil {
		gid, err = groupID(*req.Group)
	} else {
		to, err = recipientName(*req.To, s.User)
	}
	if err != nil {
		return err
	}
	if err := a.takeMessageToken(r, s); err != nil {
		return err
	}
	return a.sendAndAnswer(w, r, s, to, gid, *req.Body, clientMsgID, nil)
}

// sendAndAnswer stores a message to the user named to, or to group gid
// when gid is not 0, and answers the send.
func (a *App) sendAndAnswer(w http.ResponseWriter, r *http.Request, s *Session, to string, gid int64, body, clientMsgID string, file *newFile) error {
	sentAt := time.Now()
	var msg Message
	var undelivered []string
	var created bool
	var err error
	if gid != 0 {
		msg, undelivered, created, err = a.store.SendGroupMessage(r.Context(), s.User, gid, body, clientMsgID, file)
	} else {
		msg, created, err = a.store.SendMessage(r.Context(), s.User, to, body, clientMsgID, file)
	}
	if file != nil && (err != nil || !created) {
		a.store.RemoveUpload(file)
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		a.metrics.messagesSent.Add(1)
		if gid != 0 {
			a.metrics.groupMessagesSent.Add(1)
		}
	}
	writeJSON(w, status, sendAnswer{Message: msg, Undelivered: undelivered})
	if created {
		a.pushAfterSend(msg, a.pushRecipients(r.Context(), s.User, msg, gid, undelivered), sentAt)
	}
	return nil
}

func (a *App) handleUpload(w http.ResponseWriter, r *http.Request, s *Session) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return errBadRequest.withMessage("Upload a file as multipart/form-data with the fields to and file.")
	}
	// Room for the other fields and the multipart framing around the file.
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxFileSize+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		return errBadRequest.withMessage("The multipart body is malformed.")
	}
	if err := a.takeMessageToken(r, s); err != nil {
		return err
	}
	var to, group, clientMsgID *string
	var file *newFile
	discard := func() {
		if file != nil {
			a.store.RemoveUpload(file)
		}
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			discard()
			return uploadReadError(err)
		}
		switch part.FormName() {
		case "to", "group", "client_msg_id":
			v, err := io.ReadAll(io.LimitReader(part, 1024))
			if err != nil {
				discard()
				return uploadReadError(err)
			}
			sv := string(v)
			switch part.FormName() {
			case "to":
				to = &sv
			case "group":
				group = &sv
			default:
				clientMsgID = &sv
			}
		case "file":
			if file != nil {
				discard()
				return errBadRequest.withMessage("Send one file per upload.")
			}
			file, err = a.store.SaveUpload(part, part.FileName(), a.cfg.MaxFileSize)
			if err != nil {
				return uploadReadError(err)
			}
		}
		part.Close()
	}
	if file == nil {
		return errBadRequest.withMessage("The upload has no file field.")
	}
	if (to == nil) == (group == nil) {
		discard()
		return errBadRequest.withMessage("Give either to or group, not both.")
	}
	var name string
	var gid int64
	if group != nil {
		n, perr := strconv.ParseInt(*group, 10, 64)
		if perr != nil {
			discard()
			return errBadRequest.withMessage("group is a group id.")
		}
		gid, err = groupID(n)
	} else {
		name, err = recipientName(*to, s.User)
	}
	if err != nil {
		discard()
		return err
	}
	cid := ""
	if clientMsgID != nil {
		if err := validateClientMsgID(*clientMsgID); err != nil {
			discard()
			return err
		}
		cid = *clientMsgID
	}
	return a.sendAndAnswer(w, r, s, name, gid, file.Name, cid, file)
}

func uploadReadError(err error) error {
	if errors.Is(err, errStorage) {
		return err
	}
	var tooLarge *http.MaxBytesError
	if errors.Is(err, errFileTooLarge) || errors.As(err, &tooLarge) {
		return errTooLarge.withMessage("The file is larger than this server accepts.")
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w: %w", errStorage, err)
	}
	return errBadRequest.withMessage("The multipart body is malformed.")
}

func (a *App) handleDownload(w http.ResponseWriter, r *http.Request, s *Session) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return errNotFound
	}
	f, content, err := a.store.OpenFile(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	defer content.Close()
	disposition := "attachment"
	if inlineImageTypes[f.ContentType] {
		disposition = "inline"
	}
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("Content-Disposition", mime.FormatMediaType(disposition, map[string]string{"filename": f.Name}))
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", time.Time{}, content)
	return nil
}
