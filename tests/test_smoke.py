def test_smoke(client, upstream):
    r = client.responses.create(model="gpt-test", input="hello")
    print(r)
    assert r.output_text == "echo: hello"
    assert upstream.last["model"] == "fake-model"
