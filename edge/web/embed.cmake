# Turns the chat page into a C++ source file:
#   cmake -DINPUT=index.html -DLIBRARY=clients/js/dist/index.js -DOUTPUT=chat_page.cc -P embed.cmake
# The page imports "@parley/client"; its import map names the library's compiled ES module as a
# data: URL, filled in here from the committed clients/js/dist/index.js, so the page speaks the
# protocol through the library alone and building the edge needs no Node.js.
file(READ "${INPUT}" page)
file(READ "${LIBRARY}" library)
# Percent-encode what a JSON string in the import map, a data: URL or the HTML around it could
# take for their own syntax; every other byte stands for itself.
string(REPLACE "%" "%25" library "${library}")
string(REPLACE "\"" "%22" library "${library}")
string(REPLACE "\\" "%5C" library "${library}")
string(REPLACE "\n" "%0A" library "${library}")
string(REPLACE "\r" "%0D" library "${library}")
string(REPLACE "\t" "%09" library "${library}")
string(REPLACE "#" "%23" library "${library}")
string(REPLACE "<" "%3C" library "${library}")
string(REPLACE ">" "%3E" library "${library}")
string(REPLACE "&" "%26" library "${library}")
string(FIND "${page}" "@PARLEY_CLIENT_MODULE@" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${INPUT} has no @PARLEY_CLIENT_MODULE@ to fill in")
endif()
string(REPLACE "@PARLEY_CLIENT_MODULE@" "${library}" page "${page}")
string(HEX "${page}" content)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE "${OUTPUT}"
  "// Generated from edge/web/index.html and clients/js/dist/index.js by edge/web/embed.cmake; do not edit.\n"
  "#include \"edge/web/chat_page.h\"\n\n"
  "namespace parley::edge {\nnamespace {\n"
  "constexpr unsigned char kData[] = {${bytes} 0};\n"
  "}  // namespace\n\n"
  "const std::string_view kChatPage(reinterpret_cast<const char*>(kData), sizeof(kData) - 1);\n\n"
  "}  // namespace parley::edge\n")
