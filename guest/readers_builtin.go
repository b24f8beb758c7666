package guest

// builtin is the list Readers returns. Each reader package is wired in
// here as it lands.
var builtin = []Reader{}
