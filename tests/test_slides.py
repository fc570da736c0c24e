"""Every slide's usage snippet runs as written with `from r2n2 import ...` (placeholders filled in)."""

import pytest
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

from r2n2 import (
    R2N2, AttentionR2N2, BidirectionalR2N2, EnhancedR2N2, GRUR2N2, MaskedR2N2, MultiEntityR2N2,
    RelationalModule, SentimentR2N2, StockPriceR2N2, TransferR2N2, VisualizableAttentionR2N2, collate_fn,
    visualize_attention,
)


def test_slide1_r2n2():
    model = R2N2(5, 16, 2)
    assert model(torch.randn(3, 7, 5)).shape == (3, 2)


def test_slide2_relational_module():
    h = torch.randn(2, 6, 8)
    assert RelationalModule(8)(h).shape == (2, 6, 8)


def test_slide3_enhanced():
    assert EnhancedR2N2(5, 16, 1)(torch.randn(4, 9, 5)).shape == (4, 1)


def test_slide4_training_loop():
    input_size, hidden_size, output_size, num_epochs = 5, 8, 1, 2
    data = [(torch.randn(6, input_size), torch.randn(output_size)) for _ in range(8)]
    dataloader = DataLoader(data, batch_size=4)
    model = EnhancedR2N2(input_size, hidden_size, output_size)
    criterion = nn.MSELoss()
    optimizer = optim.Adam(model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    for epoch in range(num_epochs):
        for batch in dataloader:
            inputs, targets = batch
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_slide5_attention():
    assert AttentionR2N2(5, 8, 3)(torch.randn(2, 7, 5)).shape == (2, 3)


def test_slide6_variable_length():
    dataset = [(torch.randn(n, 4), i % 2) for i, n in enumerate([3, 7, 5, 2])]
    dataloader = DataLoader(dataset, batch_size=32, collate_fn=collate_fn)
    model = MaskedR2N2(4, 8, 2)
    padded_seqs, lengths, labels = next(iter(dataloader))
    assert padded_seqs.shape == (4, 7, 4) and lengths.tolist() == [3, 7, 5, 2] and labels.tolist() == [0, 1, 0, 1]
    assert model(padded_seqs, lengths).shape == (4, 2)


def test_slide7_sentiment():
    model = SentimentR2N2(vocab_size=10000, embed_size=100, hidden_size=128, output_size=3)
    input_sequence = torch.randint(0, 10000, (1, 20))  # Batch of 1, sequence length 20
    sentiment_probs = model.predict_proba(input_sequence)
    assert sentiment_probs.shape == (1, 3)
    torch.testing.assert_close(sentiment_probs.sum(1), torch.ones(1))
    logits = model(input_sequence)  # forward returns logits: usable with CrossEntropyLoss
    nn.CrossEntropyLoss()(logits, torch.tensor([2])).backward()


def test_slide8_stock():
    model = StockPriceR2N2(input_size=5, hidden_size=64, output_size=1, num_layers=2)
    historical_data = torch.randn(1, 30, 5)  # Batch of 1, 30 time steps, 5 features
    predicted_price = model(historical_data)
    assert predicted_price.shape == (1, 1)


def test_slide9_multi_entity():
    model = MultiEntityR2N2(num_entities=3, input_size=10, hidden_size=64, output_size=5)
    input_data = torch.randn(2, 3, 20, 10)  # Batch of 2, 3 entities, 20 time steps, 10 features
    entity_outputs = model(input_data)
    assert entity_outputs.shape == (2, 3, 5)


def test_slide10_gru():
    model = GRUR2N2(input_size=10, hidden_size=64, output_size=5)
    input_sequence = torch.randn(1, 20, 10)
    assert model(input_sequence).shape == (1, 5)
    assert hasattr(model, "gru")


def test_slide11_bidirectional():
    model = BidirectionalR2N2(input_size=10, hidden_size=64, output_size=5)
    assert model(torch.randn(1, 20, 10)).shape == (1, 5)
    assert model.fc.in_features == 128


def test_slide12_visualize(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = VisualizableAttentionR2N2(input_size=10, hidden_size=64, output_size=5)
    input_sequence = torch.randn(5, 20, 10)  # Batch of 5, 20 time steps, 10 features
    output, attention_weights = model(input_sequence)
    path = visualize_attention(input_sequence, attention_weights.squeeze(-1))
    assert output.shape == (5, 5) and attention_weights.shape == (5, 20, 1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    custom = visualize_attention(input_sequence, attention_weights, tmp_path / "plots" / "att.png")
    assert custom.is_file()


def test_attention_over_tokens_writes_each_text_and_refuses_a_mismatch(tmp_path):
    w = torch.softmax(torch.randn(3, 6), -1)
    tokens = [["good", "flight"], ["late", "again", "!"], ["ok", "a", "b", "c", "d", "e"]]
    a = visualize_attention(None, w, tmp_path / "a.png", tokens=tokens, row_labels=["x", "y", "z"], caption="Colour")
    b = visualize_attention(None, w, tmp_path / "b.png", tokens=tokens, row_labels=["x", "y", "z"], caption="Colour")
    assert a.read_bytes() == b.read_bytes()  # deterministic bytes
    plain = visualize_attention(None, w, tmp_path / "c.png")
    assert plain.read_bytes() != a.read_bytes()
    with pytest.raises(ValueError, match="tokens has 2 samples, attention_weights 3"):
        visualize_attention(None, w, tmp_path / "d.png", tokens=tokens[:2])


def test_slide14_transfer(tmp_path):
    pretrained = EnhancedR2N2(input_size=10, hidden_size=64, output_size=5)
    torch.save(pretrained.state_dict(), tmp_path / "pretrained_model.pth")
    pretrained.load_state_dict(torch.load(tmp_path / "pretrained_model.pth", weights_only=True))
    transfer_model = TransferR2N2(pretrained, new_output_size=3)
    for param in transfer_model.rnn.parameters():
        param.requires_grad = False
    for param in transfer_model.relational.parameters():
        param.requires_grad = False
    optimizer = optim.Adam(transfer_model.fc.parameters())
    x = torch.randn(4, 12, 10)
    frozen = {k: v.clone() for k, v in transfer_model.state_dict().items() if not k.startswith("fc.")}
    for _ in range(3):
        optimizer.zero_grad()
        transfer_model(x).pow(2).mean().backward()
        optimizer.step()
    assert transfer_model(x).shape == (4, 3)
    for k, v in transfer_model.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(v, frozen[k]), k  # frozen encoder stays frozen
