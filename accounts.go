package main

// User is an account as other users see it.
type User struct {
	ID          int64
	Username    string
	DisplayName string
}

// userJSON is API.md's user object; Online is set only where the caller may
// know presence (their friends).
type userJSON struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Online      *bool  `json:"online,omitempty"`
}

func (u User) json() userJSON { return userJSON{Username: u.Username, DisplayName: u.DisplayName} }

func (u User) jsonWithPresence(online bool) userJSON {
	j := u.json()
	j.Online = &online
	return j
}

// account is a user with what only login needs.
type account struct {
	User
	PasswordHash string
	Disabled     bool
}

// DirectoryEntry is a search result: a user, and whether they are the
// caller's friend (whose presence the caller may then see).
type DirectoryEntry struct {
	User
	Friend bool
}
