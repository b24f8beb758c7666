package fat

import "strings"

// cp437 maps bytes 0x80..0xFF of IBM code page 437, the OEM code page
// Linux's vfat and mtools assume for 8.3 names by default.
const cp437 = "ÇüéâäàåçêëèïîìÄÅ" +
	"ÉæÆôöòûùÿÖÜ¢£¥₧ƒ" +
	"áíóúñÑªº¿⌐¬½¼¡«»" +
	"░▒▓│┤╡╢╖╕╣║╗╝╜╛┐" +
	"└┴┬├─┼╞╟╚╔╩╦╠═╬╧" +
	"╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀" +
	"αßΓπΣσµτΦΘΩδ∞φε∩" +
	"≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0"

var cp437High = []rune(cp437)

// decodeOEM decodes an 8.3 name field. Control bytes below 0x20 other than
// NUL are kept as their code points.
func decodeOEM(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c < 0x80 {
			sb.WriteByte(c)
		} else {
			sb.WriteRune(cp437High[c-0x80])
		}
	}
	return sb.String()
}
